"""The CoNLL reader cuts sentences from fixed-size chunks: exactly the blocks of the whole decoded file."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from instructgen.io.tagged import _blocks, read_conll

PIECES = st.sampled_from(["\n", "\r", "\r\n", "\n\n", "a", "B-PER", " ", "\t", "é", "中", "😀", "O"])


def whole_file_blocks(data: bytes) -> list[str]:
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n\n")


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=60), st.integers(min_value=1, max_value=9))
def test_chunked_blocks_equal_whole_file_blocks(tmp_path_factory, pieces, chunk):
    data = "".join(pieces).encode("utf-8")
    path = tmp_path_factory.mktemp("c") / "f.conll"
    path.write_bytes(data)
    assert list(_blocks(path, 0, chunk_bytes=chunk)) == whole_file_blocks(data)


def test_reader_output_does_not_depend_on_chunk_size(tmp_path, monkeypatch):
    sentences = ["John NNP B-PER\r\nlives VBZ O\r\nin IN O\r\nParis NNP B-LOC", "Hi UH O"] * 50
    path = tmp_path / "x.conll"
    path.write_bytes(("\r\n\r\n".join(sentences) + "\r\n").encode("utf-8"))
    whole = list(read_conll(path))
    import instructgen.io.tagged as tagged

    monkeypatch.setattr(tagged, "CHUNK_BYTES", 7)
    assert list(read_conll(path)) == whole
    assert len(whole) == 100 and whole[-1].line == 349  # 50 x (4 + blank + 1 + blank) lines
