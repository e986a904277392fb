"""The ASCII line protocol parser: headers, optional sequence prefixes, bad data lines returned as errors."""

from __future__ import annotations

import numpy as np

from device_drivers.ascii_protocol import AsciiLineParser, encode_header, encode_line


def test_lines_headers_and_separators() -> None:
    p = AsciiLineParser()
    out = p.feed(b"# model: Nano\r\n# axis_cm-1: 400, 500 600\n1,2,3\n7: 4 5 6\r\n# just a comment\n")
    heads = [(ln.key, ln.value) for ln in out if ln.key]
    assert heads[0] == ("model", "Nano")
    np.testing.assert_array_equal(heads[1][1], [400.0, 500.0, 600.0])
    data = [ln for ln in out if ln.counts is not None]
    np.testing.assert_array_equal(data[0].counts, [1, 2, 3])
    assert data[0].seq is None
    np.testing.assert_array_equal(data[1].counts, [4, 5, 6])
    assert data[1].seq == 7
    assert p.counters.lines_ok == 2 and p.counters.header_lines == 3 and p.counters.bad_lines == 0


def test_split_reads_and_bad_lines() -> None:
    p = AsciiLineParser(pixels=3)
    stream = b"1,2,3\n1,2\n1,x,3\n\xff\xfe\n\n4,5,6\n"
    out = [ln for i in range(len(stream)) for ln in p.feed(stream[i : i + 1])]
    assert [ln.counts.tolist() for ln in out if ln.counts is not None] == [[1, 2, 3], [4, 5, 6]]
    assert p.counters.bad_lines == 4  # wrong count, non-numeric, not ASCII, empty
    # every bad data line comes back as an error (the empty line carries no spectrum)
    assert [ln.error for ln in out if ln.error] == ["2 values, expected 3", "non-numeric value 'x'", "not ASCII"]


def test_bad_data_lines_keep_their_seq_and_quote_little() -> None:
    p = AsciiLineParser(pixels=3)
    out = p.feed(b"4:1,nan,3\n5:1,2\n6:1,2,abcdefghijklmnopqrstuvwxyz\n7:1,2,3\n1,inf,2\n# pixels: x\n")
    assert [(ln.seq, ln.error) for ln in out] == [
        (4, "1 non-finite value(s) (NaN or infinity)"),
        (5, "2 values, expected 3"),
        (6, "non-numeric value 'abcdefghijkl...'"),
        (7, None),
        (None, "1 non-finite value(s) (NaN or infinity)"),
    ]
    assert p.counters.bad_lines == 5  # four data lines and the bad header


def test_overlong_and_cut_off_lines_are_errors() -> None:
    p = AsciiLineParser(max_line=64)
    out = p.feed(b"9:" + b"1," * 100)
    assert [(ln.seq, ln.error) for ln in out] == [(9, "line longer than 64 bytes")]
    rest = p.feed(b"1,2\n3,4\n")  # "1,2" is the tail of the long line: not a second error, not a spectrum
    assert [(ln.counts.tolist() if ln.counts is not None else None, ln.error) for ln in rest] == [([3.0, 4.0], None)]
    assert p.counters.bad_lines == 1
    p.feed(b"12:5,6")
    cut = p.take_partial()
    assert cut is not None and cut.seq == 12 and "cut off" in (cut.error or "")
    p.feed(b"# model: par")
    assert p.take_partial() is None, "a cut header line carries no spectrum"


def test_encoders_round_trip() -> None:
    p = AsciiLineParser()
    out = p.feed(encode_header("axis_nm", [800.0, 801.5]) + encode_line(np.array([10.4, 20.6]), seq=3))
    np.testing.assert_array_equal(out[0].value, [800.0, 801.5])
    assert out[1].seq == 3
    np.testing.assert_array_equal(out[1].counts, [10, 21])


def test_partial_line_dropped_when_quiet() -> None:
    p = AsciiLineParser()
    assert p.feed(b"1,2,3") == []
    assert p.drop_partial() == 5
    assert p.counters.bad_lines == 1
