"""Output sizes of the convolutions, written once: every layer, kernel and the VAE asks here.

Along one axis, with input size n, kernel k, stride s and zero padding p:

    convolution             out = (n + 2p − k) // s + 1       the windows that fit in the padded input
    transposed convolution  out = (n − 1)·s − 2p + k + op     the span its n kernels paint, less the
                                                              padding, plus output_padding op (0 ≤ op < s)

Why output_padding exists: the convolution's floor drops up to s − 1 rows at the end of its
input (they start no window), so s different input sizes give the same output size. The
transposed convolution runs the map backwards and cannot know which size it came from; op says
which: ``skipped_rows(n, k, s, p)`` rows, and conv_transpose_out_size(conv_out_size(n)) = n.

(scratchvae.check.reference keeps its own copy of the formula on purpose: the loops the tests
compare against share no code with what they check.)
"""


def conv_out_size(n, k, s=1, p=0):
    """Window positions of a convolution along one axis: (n + 2p − k) // s + 1."""
    return (n + 2 * p - k) // s + 1


def conv_transpose_out_size(n, k, s=1, p=0, op=0):
    """Output size of a transposed convolution along one axis: (n − 1)·s − 2p + k + op."""
    return (n - 1) * s - 2 * p + k + op


def skipped_rows(n, k, s=1, p=0):
    """Input rows past the last window of a convolution: (n + 2p − k) mod s. The output_padding that
    gives the size n back from the convolution's output (its input gradient has these rows, at zero)."""
    return (n + 2 * p - k) % s
