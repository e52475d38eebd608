/* The decode step's append without ctypes: one call that hands a numpy row's memory to
 * ea_writer_append. Optional: the package's build compiles it where Python's headers and a C
 * compiler are; without it, archive.py makes the same call through ctypes (0.9 us slower).
 *
 * append(prepared, rows) -> status, or None when `rows` does not expose C-contiguous memory of
 * `row_bytes`-byte rows (the caller then copies them and calls through ctypes).
 * prepared: (ea_writer_append's address, the writer, the ea_dtype, bytes of a row, the
 * ea_append_result's address, the ea_error's address), as ints; the caller checked that `rows`
 * has the shape and dtype the dtype code and row size describe. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int32_t (*append_function)(void *writer, const void *rows, int32_t dtype, size_t row_count,
                                   int64_t start, int compare, void *result, void *error);

static PyObject *append(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 6) {
        PyErr_SetString(PyExc_TypeError, "append(prepared, rows): prepared is a tuple of 6 ints");
        return NULL;
    }
    PyObject *prepared = args[0];
    append_function function = (append_function)PyLong_AsVoidPtr(PyTuple_GET_ITEM(prepared, 0));
    void *writer = PyLong_AsVoidPtr(PyTuple_GET_ITEM(prepared, 1));
    long dtype = PyLong_AsLong(PyTuple_GET_ITEM(prepared, 2));
    Py_ssize_t row_bytes = PyLong_AsSsize_t(PyTuple_GET_ITEM(prepared, 3));
    void *result = PyLong_AsVoidPtr(PyTuple_GET_ITEM(prepared, 4));
    void *error = PyLong_AsVoidPtr(PyTuple_GET_ITEM(prepared, 5));
    if (PyErr_Occurred()) return NULL;
    if (function == NULL || writer == NULL || row_bytes <= 0) {
        PyErr_SetString(PyExc_ValueError, "append: a NULL function or writer, or rows of no bytes");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_C_CONTIGUOUS) != 0) {
        PyErr_Clear();  /* not contiguous, or no buffer: the caller's copy handles it */
        Py_RETURN_NONE;
    }
    if (view.len % row_bytes != 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    /* The library validates every id; the buffer stays alive until released after the call. */
    int32_t status = function(writer, view.buf, (int32_t)dtype, (size_t)(view.len / row_bytes), -1, 0, result, error);
    PyBuffer_Release(&view);
    return PyLong_FromLong(status);
}

static PyMethodDef methods[] = {
    {"append", (PyCFunction)(void (*)(void))append, METH_FASTCALL,
     "append(prepared, rows): ea_writer_append of rows at the end; None when rows are not contiguous"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastappend", "The decode step's append without ctypes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastappend(void) { return PyModule_Create(&module); }
