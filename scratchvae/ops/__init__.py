"""The array operations the layers are built from, each in one file with its CPU code, its GPU caller and
its CUDA body: im2col and col2im, the parity split of a transposed convolution, the elementwise passes,
matrix products (blas), Adam's update (adam). Below them: the device table (devices), the output sizes
(sizes), the CPU's threads (threads), host-to-GPU copies (uploads) and the kernels' machinery (cuda)."""
