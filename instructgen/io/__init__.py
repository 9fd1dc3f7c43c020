"""Reading sources into Examples and writing Records in the layouts trainers expect."""
