"""The transposed convolution split by output parity: each output pixel is one GEMM result.

ConvTranspose2D paints every input pixel's kernel onto the output, sy pixels apart, and
adds the overlaps (col2im). Look from one output pixel instead. Along one axis, with
stride sy and padding ph, output row p sits at padded row p + ph = R·sy + φ: its phase is
φ = (p + ph) mod sy and its grid row R = (p + ph) // sy. The input rows r that painted it
are those with r·sy + j = R·sy + φ for some kernel row j < kh, that is

    j = φ + sy·t,   r = R − t,   t = 0, 1, …, T − 1,   T = ⌈kh / sy⌉

(a tap with j ≥ kh is not in the kernel and counts as zero). Both axes together:

    y[n, o, p, q] = Σ_{c, t, u} x[n, c, R − t, Q − u] · W[c, o, φ + sy·t, ψ + sx·u]

For one phase (φ, ψ) that is an ordinary stride-1 correlation of x with a T×T kernel
(flipped: tap t reads row R − t). And every phase reads the same window of x, rows
R − T + 1 … R, so one stride-1 im2col of x serves all sy·sx phases, and one matrix
product with the phase kernels stacked as rows computes every output pixel once:

    COL = im2col(x_ext, T×T, stride 1)     (C_in·Ty·Tx, Gy·Gx·N)    x_ext: x on the grid (below)
    Y   = Wp · COL                         (sy·sx·C_out, Gy·Gx·N)   Wp[(φ, ψ, o), (c, j, i)]
    y[n, o, R·sy + φ − ph, Q·sx + ψ − pw] = Y[(φ, ψ, o), (R − R0, Q − Q0, n)]   (interleave)

Wp[(φ, ψ, o), (c, j, i)] = W[c, o, φ + sy·(Ty − 1 − j), ψ + sx·(Tx − 1 − i)]: window offset j
is tap t = Ty − 1 − j. Each phase grid has G rows, R0 … R0 + G − 1, R0 = ph // sy (phase_grid).
x_ext is x shifted onto the grid: its row e is x's row e + F, F = R0 − (T − 1), zero off the image,
for e = 0 … G + T − 2; window g of x_ext (rows g … g + T − 1) is x's rows R − T + 1 … R, R = R0 + g.

Against the col2im path (COL = Wᵀ·X, C_out·kh·kw rows, then overlapping adds) this writes
no kernel-sized copy of the output and adds nothing up afterwards. The price is the grid's
border: a grid row whose window hangs over the input's edge multiplies zeros, and for a
kernel that the stride does not divide, a phase with fewer taps multiplies zero taps.
And its column buffer holds the input's windows (C_in·T·T rows), where col2im's holds the
output's kernels (C_out·kh·kw rows): with few output channels (an RGB image) the input's
is the larger one to write and read. ``parity_costs`` gives both ratios; the fast layers
(layers/fast.py) split by parity when it does at most PARITY_MAX_PRODUCTS× the col2im
path's multiplications with a column buffer no larger than col2im's.

Conv2D's input gradient is a transposed convolution of dy with the same W (see
layers/conv.py), so this one routine is the fast transposed direction of both layers.
``scratchvae.check.reference.conv_transpose2d_by_parity`` is the loop version, pixel by pixel.
"""
from typing import NamedTuple

from .blas import matmul
from .cuda import Kernel, vec_for
from .devices import Op, xp_of
from .im2col import im2col_gpu
from .sizes import conv_transpose_out_size
from .threads import parallel

PARITY_MAX_PRODUCTS = 1.5


def new_buffer_each_time(like):
    """A buffer(name, shape) function that keeps nothing: each call makes a new uninitialised array, in like's
    dtype and array module (the layers pass Layer._buffer instead, which keeps them from step to step)."""
    xp = xp_of(like)
    return lambda name, shape: xp.empty(shape, dtype=like.dtype)


class PhaseGrid(NamedTuple):
    """One axis of a transposed convolution split by parity."""
    out: int            # the output's size
    painted: int        # P: the output rows some kernel reaches (the rest are output_padding's, 0)
    taps: int           # T = ⌈k/stride⌉: kernel taps per phase
    first_row: int      # R0: the grid row of output row 0
    rows: int           # G: grid rows
    first_input: int    # F: the input row at row 0 of the extended input x_ext


def phase_grid(size, k, stride, pad, op):
    """One axis of a transposed convolution: its PhaseGrid (output size, painted output size P, taps per phase
    T, first grid row R0, grid rows G, F: the input row at row 0 of the extended input x_ext).

    Output rows past the last one any kernel reaches, padded row (size − 1)·stride + k − 1, are
    output_padding's: nothing paints them, they are 0 (Conv2D's input gradient has them where its
    forward skipped the input's last rows). The grid covers only the painted rows."""
    out = conv_transpose_out_size(size, k, stride, pad, op)
    painted = min(out, (size - 1) * stride + k - pad)  # P
    taps = -(-k // stride)                              # T = ⌈k/stride⌉
    r0 = pad // stride                                  # output row 0 is in grid row R0 = pad // stride
    rows = (pad + painted - 1) // stride - r0 + 1       # G
    first = r0 - (taps - 1)                             # F: grid row g reads input rows g + F …
    return PhaseGrid(out, painted, taps, r0, rows, first)


def parity_costs(ci, co, h, w, kh, kw, sy, sx, ph, pw, opy, opx):
    """(multiplications, column-buffer numbers) of the parity split, each over the col2im path's,
    for a C_in → C_out transposed convolution of an h×w input (per image: N cancels)."""
    gy, gx = phase_grid(h, kh, sy, ph, opy), phase_grid(w, kw, sx, pw, opx)
    windows = ci * gy.taps * gx.taps * gy.rows * gx.rows                # im2col of x, per image
    products = sy * sx * co * windows / (ci * co * kh * kw * h * w)
    buffer = windows / (co * kh * kw * h * w)                           # … vs COL = Wᵀ·X
    return products, buffer


def phase_weights(W, sy, sx, ty, tx):
    """W (C_in, C_out, kh, kw) → Wp (sy·sx·C_out, C_in·ty·tx), one row per (phase, output channel)."""
    xp = xp_of(W)
    ci, co, kh, kw = W.shape
    wext = xp.zeros((ci, co, sy * ty, sx * tx), dtype=W.dtype)  # taps past the kernel stay zero
    wext[:, :, :kh, :kw] = W
    wp = wext.reshape(ci, co, ty, sy, tx, sx)           # [c, o, t, φ, u, ψ] = W[c, o, t·sy + φ, u·sx + ψ]
    wp = wp[:, :, ::-1, :, ::-1, :]                     # window offset j is tap t = T − 1 − j
    return wp.transpose(3, 5, 1, 0, 2, 4).reshape(sy * sx * co, ci * ty * tx)  # [(φ, ψ, o), (c, j, i)]


def conv_transpose_parity(x, W, sy, sx, ph, pw, opy=0, opx=0, buffer=None, bias=None):
    """y = the transposed convolution of x (N, C_in, H, W) with W (C_in, C_out, kh, kw), plus bias (C_out,)
    when given, by output parity. Returns (N, C_out, oh, ow), stored (C_out, oh, ow, N) like im2col's outputs.

    buffer(name, shape): where to put the temporaries "windows", "wp" and "phases" (a layer's Layer._buffer,
    kept from call to call); new arrays when None. The same steps on either device; the three that differ
    (gather_windows, phase_weights_for, interleave) are Ops: strided copies over the CPU's cores, or on the
    GPU four launches in all and no copies."""
    xp = xp_of(x)
    buffer = buffer or new_buffer_each_time(x)
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    gy, gx = phase_grid(h, kh, sy, ph, opy), phase_grid(w, kw, sx, pw, opx)    # rows, columns
    col = buffer("windows", (ci, gy.taps, gx.taps, gy.rows, gx.rows, n))      # (Ci, Ty, Tx, Gy, Gx, N)
    gather_windows(x, gy, gx, col)                                   # COL[(c,j,i),(r,q,n)] = x_ext[n, c, r+j, q+i]
    wp = phase_weights_for(W, sy, sx, gy.taps, gx.taps, buffer)      # (sy*sx*Co, Ci*Ty*Tx)
    phases = buffer("phases", (sy, sx, co, gy.rows, gx.rows, n))     # (sy, sx, Co, Gy, Gx, N)
    matmul(wp, col.reshape(ci * gy.taps * gx.taps, gy.rows * gx.rows * n),
           out=phases.reshape(sy * sx * co, gy.rows * gx.rows * n))  # (sy*sx*Co, Gy*Gx*N)  Y = Wp·COL
    y = xp.empty((co, gy.out, gx.out, n), dtype=x.dtype)             # (Co, oh, ow, N): every pixel written once
    interleave(phases, y, gy, gx, sy, sx, ph, pw, bias)              # y[n, o, R·sy + φ − ph, …] = Y[(φ, ψ, o), …] + b
    return y.transpose(3, 0, 1, 2)                                   # (N, Co, oh, ow) view


# ---- the three steps that differ by device: the windows' gather, Wp, and the interleave ----------------
def gather_windows_cpu(x, gy, gx, col):
    """COL (Ci, Ty, Tx, Gy, Gx, N) ← the windows of x on the grid, zero off x: strided copies over the cores."""
    n, ci, h, w = x.shape
    ty, tx, fy, fx = gy.taps, gx.taps, gy.first_input, gx.first_input
    xt = x.transpose(1, 2, 3, 0)                                     # (Ci, H, W, N) view

    def gather(chans):                                               # input channels `chans`
        # COL[(c, j, i), (gr, gc, n)] = x_ext[n, c, gr + j, gc + i] = x[n, c, gr + j + fy, gc + i + fx], 0 off x
        for j in range(ty):
            r_lo, r_hi = min(gy.rows, max(0, -j - fy)), max(0, min(gy.rows, h - j - fy))   # grid rows inside x
            for i in range(tx):
                q_lo, q_hi = min(gx.rows, max(0, -i - fx)), max(0, min(gx.rows, w - i - fx))
                tap = col[chans, j, i]                               # (C, Gy, Gx, N)
                tap[:, :r_lo] = 0
                tap[:, r_hi:] = 0
                tap[:, :, :q_lo] = 0
                tap[:, :, q_hi:] = 0
                if r_lo < r_hi and q_lo < q_hi:
                    tap[:, r_lo:r_hi, q_lo:q_hi] = xt[chans, r_lo + j + fy:r_hi + j + fy, q_lo + i + fx:q_hi + i + fx]
    parallel(gather, ci, col.size)


def gather_windows_gpu(x, gy, gx, col):
    """The same by the im2col kernel: stride 1, the grid's rows, padding −F."""
    im2col_gpu(x, gy.taps, gx.taps, 1, 1, -gy.first_input, -gx.first_input, col)


def phase_weights_cpu(W, sy, sx, ty, tx, buffer):
    """phase_weights itself: on the CPU Wp is a reshaped view of W copied once, no buffer needed."""
    return phase_weights(W, sy, sx, ty, tx)


def interleave_cpu(phases, y, gy, gx, sy, sx, ph, pw, bias):
    """y (Co, oh, ow, N) ← each output pixel from its phase's product (strided copies over the cores), then
    the bias; output_padding's rows and columns 0 (plus the bias)."""
    co, paint_h, paint_w = y.shape[0], gy.painted, gx.painted
    r0, q0 = gy.first_row, gx.first_row

    def interleave_chans(chans):                                     # output channels `chans`
        y[chans, paint_h:] = 0                                       # output_padding's rows and columns
        y[chans, :, paint_w:] = 0
        for phy in range(sy):
            y0 = (phy - ph) % sy                                     # first output row of phase φ
            if y0 >= paint_h:
                continue
            grid_rows = slice((y0 + ph) // sy - r0, (y0 + ph) // sy - r0 + (paint_h - 1 - y0) // sy + 1)
            for phx in range(sx):
                x0 = (phx - pw) % sx
                if x0 >= paint_w:
                    continue
                grid_cols = slice((x0 + pw) // sx - q0, (x0 + pw) // sx - q0 + (paint_w - 1 - x0) // sx + 1)
                y[chans, y0:paint_h:sy, x0:paint_w:sx] = phases[phy, phx, chans, grid_rows, grid_cols]  # (Co, R, Q, N)
    parallel(interleave_chans, co, y.size)
    if bias is not None:
        y += bias[:, None, None, None]                               # (Co, oh, ow, N)


INTERLEAVE_PARAMS = ("raw T phases, raw T bias, int32 has_bias, int32 nimg, int32 nch, int32 oh, int32 ow, "
                     "int32 paint_h, int32 paint_w, int32 sy, int32 sx, int32 ph, int32 pw, int32 r0, int32 q0, "
                     "int32 gy, int32 gx, int32 vec")
# docs: interleave-kernel
INTERLEAVE_BODY = """
int k = i * vec;                // the first of vec neighbouring images this thread writes
int n = k % nimg;  k /= nimg;   // output pixel → (c, Y, X, n)
int X = k % ow;    k /= ow;
int Y = k % oh;
int c = k / oh;
Pack<T> a = {};                 // output_padding's rows and columns: nothing painted there
if (Y < paint_h && X < paint_w) {
    int py = Y + ph, px = X + pw;           // padded row = grid row·sy + phase
    int phy = py % sy, phx = px % sx;
    int R = py / sy - r0, Q = px / sx - q0;
    a = load_pack(&phases[(((((phy * sx + phx) * nch + c) * gy + R) * gx + Q) * nimg) + n], vec);
}
if (has_bias)
    for (int v = 0; v < vec; ++v) a.v[v] += bias[c];
store_pack(&y[i * vec], a, vec);
"""
# end docs: interleave-kernel
INTERLEAVE = Kernel("interleave", INTERLEAVE_PARAMS, "raw T y", INTERLEAVE_BODY)

PHASE_WEIGHTS_PARAMS = "raw T W, int32 ci, int32 co, int32 kh, int32 kw, int32 sy, int32 sx, int32 ty, int32 tx"
PHASE_WEIGHTS_BODY = """
int k = i;                      // Wp element → ((phy, phx, o), (c, a, b))
int b = k % tx;   k /= tx;
int a = k % ty;   k /= ty;
int c = k % ci;   k /= ci;
int o = k % co;   k /= co;
int phx = k % sx;
int phy = k / sx;
int j = phy + sy * (ty - 1 - a);            // window column a is tap T − 1 − a
int jj = phx + sx * (tx - 1 - b);
wp = (j < kh && jj < kw) ? W[((c * co + o) * kh + j) * kw + jj] : (T)0;   // taps past the kernel: 0
"""
PHASE_WEIGHTS = Kernel("phase_weights", PHASE_WEIGHTS_PARAMS, "T wp", PHASE_WEIGHTS_BODY)


def phase_weights_gpu(W, sy, sx, ty, tx, buffer):
    """phase_weights by one gather kernel (PHASE_WEIGHTS), into the buffer "wp"."""
    ci, co, kh, kw = W.shape
    wp = buffer("wp", (sy * sx * co, ci * ty * tx))                  # (sy*sx*Co, Ci*Ty*Tx)
    PHASE_WEIGHTS(W.reshape(-1), ci, co, kh, kw, sy, sx, ty, tx, wp)
    return wp


def interleave_gpu(phases, y, gy, gx, sy, sx, ph, pw, bias):
    """interleave as one kernel (INTERLEAVE): every output pixel put in place with its bias, in one pass."""
    co, oh, ow, n = y.shape
    vec, flat = vec_for(n, phases, y), y.reshape(-1)
    INTERLEAVE(phases.reshape(-1), flat if bias is None else bias, int(bias is not None), n, co, oh, ow, gy.painted,
               gx.painted, sy, sx, ph, pw, gy.first_row, gx.first_row, gy.rows, gx.rows, vec, flat,
               size=y.size // vec)


gather_windows = Op("gather_windows", cpu=gather_windows_cpu, gpu=gather_windows_gpu)
phase_weights_for = Op("phase_weights", cpu=phase_weights_cpu, gpu=phase_weights_gpu)
interleave = Op("interleave", cpu=interleave_cpu, gpu=interleave_gpu)
