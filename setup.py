"""Package discovery that pyproject.toml cannot express: the template pools live in the top-level
`task_templates/` folder (data beside the code, as the design card asks) and install as the package
data of `instructgen.task_templates`, so wheels and editable installs find them the same way
(`instructgen.templates.pool.templates_root`). Everything else is configured in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

POOLS = "instructgen.task_templates"

setup(
    packages=find_namespace_packages(include=["instructgen", "instructgen.*"], exclude=[f"{POOLS}*"])
    + [POOLS]
    + [f"{POOLS}.{name}" for name in find_namespace_packages(where="task_templates")],
    package_dir={POOLS: "task_templates"},
)
