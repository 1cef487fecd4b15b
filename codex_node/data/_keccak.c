/* keccak256 of many equal-sized chunks at once: the slot trees' cell leaves and inner nodes (data/merkle.py).
 *
 * A slot tree hashes every 2 KiB cell of a slot, then every pair of nodes above them: a great many independent
 * keccak256 calls of one size. One keccak-f[1600] permutation runs lane by lane on 64-bit words, so several
 * independent hashes can run side by side in the lanes of one SIMD register: 8 with AVX-512, 4 with AVX2. The
 * implementation is chosen once per process from what the CPU offers (and the OS saves), best first; the
 * portable one (one hash at a time) runs everywhere else and hashes the chunks the wide ones leave over.
 *
 * keccak256 here is Ethereum's: Keccak[r=1088, c=512] with the original padding (0x01 ... 0x80), not FIPS 202
 * SHA3-256 (0x06). Lanes are read and written little-endian, as the specification says.
 *
 * Everything below the Python glue is pure computation on caller-owned memory; the GIL is released while a
 * large input is hashed, so a few threads hash on a few cores.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define KECCAK_X86 1
#include <immintrin.h>
#endif

#define RATE 136   /* bytes absorbed per permutation: 17 lanes */
#define RATE_LANES 17
#define DIGEST 32  /* bytes of output: 4 lanes */
#define GIL_FREE_BYTES 4096  /* inputs at least this big are hashed with the GIL released */

static const uint64_t ROUND_CONSTANTS[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL, 0x8000000080008000ULL,
    0x000000000000808BULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008AULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
    0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800AULL, 0x800000008000000AULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* The rotation of lane (x, y), at index x + 5y (rho). */
static const unsigned ROTATIONS[25] = {
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
};

/* The 24 rounds over a state A[25] of lane type V. The caller defines, for V:
 *   XOR(a, b), XOR5(a, b, c, d, e), CHI(a, b, c) = a ^ (~b & c), ROL(x, n) (n a constant 0..63),
 *   RC(i) (round constant i as a V).
 * Written as loops with constant bounds, fully unrolled, so every index and rotation is a constant. */
#define KECCAK_ROUNDS(V, A)                                                                                  \
    do {                                                                                                     \
        for (int round_ = 0; round_ < 24; round_++) {                                                        \
            V C_[5], D_[5], B_[25];                                                                          \
            _Pragma("GCC unroll 5") for (int x_ = 0; x_ < 5; x_++)                                           \
                C_[x_] = XOR5(A[x_], A[x_ + 5], A[x_ + 10], A[x_ + 15], A[x_ + 20]);                         \
            _Pragma("GCC unroll 5") for (int x_ = 0; x_ < 5; x_++)                                           \
                D_[x_] = XOR(C_[(x_ + 4) % 5], ROL(C_[(x_ + 1) % 5], 1));                                    \
            _Pragma("GCC unroll 5") for (int y_ = 0; y_ < 5; y_++)                                           \
                _Pragma("GCC unroll 5") for (int x_ = 0; x_ < 5; x_++)                                       \
                    B_[y_ + 5 * ((2 * x_ + 3 * y_) % 5)] =                                                   \
                        ROL(XOR(A[x_ + 5 * y_], D_[x_]), ROTATIONS[x_ + 5 * y_]);                            \
            _Pragma("GCC unroll 5") for (int y_ = 0; y_ < 5; y_++)                                           \
                _Pragma("GCC unroll 5") for (int x_ = 0; x_ < 5; x_++)                                       \
                    A[x_ + 5 * y_] = CHI(B_[x_ + 5 * y_], B_[(x_ + 1) % 5 + 5 * y_], B_[(x_ + 2) % 5 + 5 * y_]); \
            A[0] = XOR(A[0], RC(round_));                                                                    \
        }                                                                                                    \
    } while (0)

static inline uint64_t load_le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void store_le(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* The last block of a chunk: its tail (size % RATE bytes) and the padding, as RATE bytes. */
static void last_block(uint8_t block[RATE], const uint8_t *chunk, size_t size) {
    size_t tail = size % RATE;
    memset(block, 0, RATE);
    memcpy(block, chunk + size - tail, tail);
    block[tail] ^= 0x01;
    block[RATE - 1] ^= 0x80;
}

/* The parts of a group of `width` side-by-side hashes that are the same whatever the SIMD width. State words are
 * laid out word-major: words[j * width + i] is word j of lane i, as one vector load or store of word j wants. */

/* The byte offsets of chunks first .. first+width-1 in `at`; a lane past `count` repeats the last real chunk (its
 * digest is not written out). Returns the real lanes. */
static size_t lane_offsets(long long at[], size_t width, size_t size, size_t first, size_t count) {
    size_t lanes = count - first < width ? count - first : width;
    for (size_t i = 0; i < width; i++) at[i] = (long long)((first + (i < lanes ? i : lanes - 1)) * size);
    return lanes;
}

/* Each lane's padded last block (RATE_LANES words per lane), word-major. */
static void last_blocks(uint64_t *words, const uint8_t *data, const long long at[], size_t width, size_t size) {
    for (size_t i = 0; i < width; i++) {
        uint8_t block[RATE];
        last_block(block, data + (size_t)at[i], size);
        for (int j = 0; j < RATE_LANES; j++) words[(size_t)j * width + i] = load_le(block + 8 * j);
    }
}

/* The digests of the real lanes (DIGEST / 8 words per lane, word-major) into out, chunk `first` first. */
static void write_digests(uint8_t *out, const uint64_t *words, size_t width, size_t first, size_t lanes) {
    for (size_t i = 0; i < lanes; i++)
        for (int j = 0; j < DIGEST / 8; j++) store_le(out + (first + i) * DIGEST + 8 * j, words[(size_t)j * width + i]);
}

/* ---- portable: one hash at a time ---- */

#define XOR(a, b) ((a) ^ (b))
#define XOR5(a, b, c, d, e) ((a) ^ (b) ^ (c) ^ (d) ^ (e))
#define CHI(a, b, c) ((a) ^ (~(b) & (c)))
#define ROL(x, n) (((x) << (n)) | ((x) >> ((64 - (n)) & 63)))
#define RC(i) ROUND_CONSTANTS[i]

static void permute_scalar(uint64_t A[25]) { KECCAK_ROUNDS(uint64_t, A); }

static void hash_one(const uint8_t *chunk, size_t size, uint8_t *out) {
    uint64_t A[25] = {0};
    size_t off = 0;
    for (; size - off >= RATE; off += RATE) {
        for (int j = 0; j < RATE_LANES; j++) A[j] ^= load_le(chunk + off + 8 * j);
        permute_scalar(A);
    }
    uint8_t block[RATE];
    last_block(block, chunk, size);
    for (int j = 0; j < RATE_LANES; j++) A[j] ^= load_le(block + 8 * j);
    permute_scalar(A);
    for (int j = 0; j < DIGEST / 8; j++) store_le(out + 8 * j, A[j]);
}

/* Hashes chunks [first, count) of `data`; each wide implementation below hashes groups of its width the same way.
 */
static void hash_scalar(const uint8_t *data, size_t size, size_t first, size_t count, uint8_t *out) {
    for (size_t i = first; i < count; i++) hash_one(data + i * size, size, out + i * DIGEST);
}

#undef XOR
#undef XOR5
#undef CHI
#undef ROL
#undef RC

#ifdef KECCAK_X86

/* ---- AVX2: 4 hashes side by side ---- */

#define XOR(a, b) _mm256_xor_si256((a), (b))
#define XOR5(a, b, c, d, e) XOR(XOR(XOR((a), (b)), XOR((c), (d))), (e))
#define CHI(a, b, c) XOR((a), _mm256_andnot_si256((b), (c)))
#define ROL(x, n) _mm256_or_si256(_mm256_slli_epi64((x), (n)), _mm256_srli_epi64((x), 64 - (n)))
#define RC(i) _mm256_set1_epi64x((long long)ROUND_CONSTANTS[i])

__attribute__((target("avx2"))) static void permute_avx2(__m256i A[25]) { KECCAK_ROUNDS(__m256i, A); }

/* Chunks first .. first+3, side by side (lane_offsets says what fills lanes past `count`). */
__attribute__((target("avx2"))) static void hash4(const uint8_t *data, size_t size, size_t first, size_t count,
                                                  uint8_t *out) {
    long long at[4];
    size_t lanes = lane_offsets(at, 4, size, first, count);
    __m256i index = _mm256_loadu_si256((const __m256i *)at);
    __m256i A[25];
    for (int j = 0; j < 25; j++) A[j] = _mm256_setzero_si256();
    for (size_t off = 0; size - off >= RATE; off += RATE) {
        const long long *base = (const long long *)(data + off);
        for (int j = 0; j < RATE_LANES; j++) A[j] = XOR(A[j], _mm256_i64gather_epi64(base + j, index, 1));
        permute_avx2(A);
    }
    uint64_t words[RATE_LANES * 4];
    last_blocks(words, data, at, 4, size);
    for (int j = 0; j < RATE_LANES; j++) A[j] = XOR(A[j], _mm256_loadu_si256((const __m256i *)(words + 4 * j)));
    permute_avx2(A);
    for (int j = 0; j < DIGEST / 8; j++) _mm256_storeu_si256((__m256i *)(words + 4 * j), A[j]);
    write_digests(out, words, 4, first, lanes);
}

__attribute__((target("avx2"))) static void hash_avx2(const uint8_t *data, size_t size, size_t first,
                                                      size_t count, uint8_t *out) {
    for (size_t i = first; i < count; i += 4) hash4(data, size, i, count, out);
}

#undef XOR
#undef XOR5
#undef CHI
#undef ROL
#undef RC

/* ---- AVX-512: 8 hashes side by side (ternary logic for the 3-input steps, native rotates) ---- */

#define XOR(a, b) _mm512_xor_si512((a), (b))
#define XOR3(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0x96)
#define XOR5(a, b, c, d, e) XOR3(XOR3((a), (b), (c)), (d), (e))
#define CHI(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0xD2)
#define ROL(x, n) _mm512_rolv_epi64((x), _mm512_set1_epi64((long long)(n)))
#define RC(i) _mm512_set1_epi64((long long)ROUND_CONSTANTS[i])

__attribute__((target("avx512f"))) static void permute_avx512(__m512i A[25]) { KECCAK_ROUNDS(__m512i, A); }

/* Chunks first .. first+7, side by side (lane_offsets says what fills lanes past `count`). */
__attribute__((target("avx512f"))) static void hash8(const uint8_t *data, size_t size, size_t first, size_t count,
                                                     uint8_t *out) {
    long long at[8];
    size_t lanes = lane_offsets(at, 8, size, first, count);
    __m512i index = _mm512_loadu_si512((const void *)at);
    __m512i A[25];
    for (int j = 0; j < 25; j++) A[j] = _mm512_setzero_si512();
    for (size_t off = 0; size - off >= RATE; off += RATE) {
        const uint8_t *base = data + off;
        for (int j = 0; j < RATE_LANES; j++)
            A[j] = XOR(A[j], _mm512_i64gather_epi64(index, (const void *)(base + 8 * j), 1));
        permute_avx512(A);
    }
    uint64_t words[RATE_LANES * 8];
    last_blocks(words, data, at, 8, size);
    for (int j = 0; j < RATE_LANES; j++) A[j] = XOR(A[j], _mm512_loadu_si512((const void *)(words + 8 * j)));
    permute_avx512(A);
    for (int j = 0; j < DIGEST / 8; j++) _mm512_storeu_si512((void *)(words + 8 * j), A[j]);
    write_digests(out, words, 8, first, lanes);
}

__attribute__((target("avx512f"))) static void hash_avx512(const uint8_t *data, size_t size, size_t first,
                                                          size_t count, uint8_t *out) {
    for (size_t i = first; i < count; i += 8) hash8(data, size, i, count, out);
}

#undef XOR
#undef XOR3
#undef XOR5
#undef CHI
#undef ROL
#undef RC

#endif /* KECCAK_X86 */

/* ---- dispatch and the Python glue ---- */

typedef void (*hash_fn)(const uint8_t *data, size_t size, size_t first, size_t count, uint8_t *out);

typedef struct {
    const char *name;
    hash_fn fn;
} implementation;

/* Best first; `available` holds those this CPU and OS can run. */
static implementation available[3];
static int available_count = 0;

static void find_implementations(void) {
#ifdef KECCAK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) available[available_count++] = (implementation){"avx512", hash_avx512};
    if (__builtin_cpu_supports("avx2")) available[available_count++] = (implementation){"avx2", hash_avx2};
#endif
    available[available_count++] = (implementation){"portable", hash_scalar};
}

static PyObject *hash_with(hash_fn fn, PyObject *data_obj, Py_ssize_t size) {
    if (size <= 0) return PyErr_Format(PyExc_ValueError, "chunk size must be positive, got %zd", size);
    Py_buffer view;
    if (PyObject_GetBuffer(data_obj, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len % size) {
        PyBuffer_Release(&view);
        return PyErr_Format(PyExc_ValueError, "%zd bytes are not a whole number of %zd-byte chunks", view.len, size);
    }
    size_t count = (size_t)(view.len / size);
    if (count > (size_t)(PY_SSIZE_T_MAX / DIGEST)) {  /* 1-byte chunks of more than 2**58 bytes */
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(count * DIGEST));
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    const uint8_t *data = (const uint8_t *)view.buf;
    if (view.len >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS fn(data, (size_t)size, 0, count, out);
        Py_END_ALLOW_THREADS
    } else if (count) {
        fn(data, (size_t)size, 0, count, out);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *py_hash_chunks(PyObject *self, PyObject *args) {
    PyObject *data;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "On:hash_chunks", &data, &size)) return NULL;
    return hash_with(available[0].fn, data, size);
}

static PyObject *py_hash_chunks_with(PyObject *self, PyObject *args) {
    const char *name;
    PyObject *data;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "sOn:hash_chunks_with", &name, &data, &size)) return NULL;
    for (int i = 0; i < available_count; i++)
        if (strcmp(available[i].name, name) == 0) return hash_with(available[i].fn, data, size);
    return PyErr_Format(PyExc_ValueError, "keccak implementation %s is not available on this machine", name);
}

static PyObject *py_implementations(PyObject *self, PyObject *unused) {
    PyObject *names = PyTuple_New(available_count);
    if (names == NULL) return NULL;
    for (int i = 0; i < available_count; i++) {
        PyObject *name = PyUnicode_FromString(available[i].name);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

static PyMethodDef methods[] = {
    {"hash_chunks", py_hash_chunks, METH_VARARGS,
     "hash_chunks(data, size) -> bytes\n\nkeccak256 of each consecutive size-byte chunk of data, concatenated, "
     "with the fastest implementation this machine runs. ValueError unless len(data) is a multiple of size > 0."},
    {"hash_chunks_with", py_hash_chunks_with, METH_VARARGS,
     "hash_chunks_with(name, data, size) -> bytes\n\nhash_chunks with the named implementation (one of "
     "implementations())."},
    {"implementations", py_implementations, METH_NOARGS,
     "implementations() -> tuple[str, ...]\n\nThe implementations this machine runs, fastest first."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_keccak", "keccak256 of many equal-sized chunks, several side by side where the CPU can.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__keccak(void) {
    if (available_count == 0) find_implementations();
    return PyModule_Create(&module);
}
