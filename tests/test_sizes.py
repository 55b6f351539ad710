"""The output-size formulas, against counting and against each other."""
from hypothesis import assume, given
from hypothesis import strategies as st

from scratchvae.ops.sizes import conv_out_size, conv_transpose_out_size, skipped_rows


@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 3))
def test_sizes_count_windows_and_give_the_input_back(n, k, s, p):
    assume(k <= n + 2 * p)                                          # a window fits: a convolution exists
    out = conv_out_size(n, k, s, p)
    # count the windows that fit: starts 0, s, 2s, … with the window inside the padded input
    assert out == sum(1 for start in range(0, n + 2 * p, s) if start + k <= n + 2 * p)
    op = skipped_rows(n, k, s, p)
    assert 0 <= op < s
    assert conv_transpose_out_size(out, k, s, p, op) == n          # output_padding names the input size
    # the transposed convolution paints (out − 1)·s + k rows; padding removes p on each side
    assert conv_transpose_out_size(out, k, s, p) == (out - 1) * s + k - 2 * p
