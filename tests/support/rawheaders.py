"""Produce records whose header names are arbitrary bytes (not possible through
confluent-kafka's Python API, which takes ``str`` names): librdkafka's C API,
the library the confluent-kafka wheel ships, called through ctypes.

Used to reproduce what other clients (kcat, librdkafka in C) can write: a
header name that is not valid UTF-8.
"""

from __future__ import annotations

import ctypes
import glob
import os

import confluent_kafka

_END, _TOPIC, _VALUE, _KEY, _HEADER = 0, 1, 4, 5, 9


class _Mem(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Header(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("val", ctypes.c_void_p), ("size", ctypes.c_ssize_t)]


class _U(ctypes.Union):
    _fields_ = [("cstr", ctypes.c_char_p), ("mem", _Mem), ("header", _Header),
                ("pad", ctypes.c_char * 64)]  # fmt: skip


class _Vu(ctypes.Structure):
    _fields_ = [("vtype", ctypes.c_int), ("u", _U)]


def _lib() -> ctypes.CDLL:
    base = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    found = glob.glob(os.path.join(base, "confluent_kafka.libs", "librdkafka*.so*"))
    lib = ctypes.CDLL(found[0] if found else "librdkafka.so.1")
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_size_t]  # fmt: skip
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_produceva.restype = ctypes.c_void_p
    lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Vu), ctypes.c_size_t]
    lib.rd_kafka_error_string.restype = ctypes.c_char_p
    lib.rd_kafka_error_string.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_outq_len.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    return lib


def produce_raw(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, list[tuple[bytes, bytes]]]]
) -> None:
    """Produce ``(key, value, [(name, value), ...])`` records; names are raw bytes."""
    lib = _lib()
    conf = lib.rd_kafka_conf_new()
    err = ctypes.create_string_buffer(512)
    for k, v in (
        (b"bootstrap.servers", bootstrap.encode()),
        (b"linger.ms", b"5"),
        (b"message.max.bytes", b"8388608"),
    ):
        if lib.rd_kafka_conf_set(conf, k, v, err, 512) != 0:
            raise RuntimeError(err.value.decode())
    rk = lib.rd_kafka_new(0, conf, err, 512)  # 0: producer
    if not rk:
        raise RuntimeError(err.value.decode())
    keep: list[object] = []  # buffers must outlive the produce call
    try:
        for key, value, headers in records:
            vus: list[_Vu] = []
            t = ctypes.create_string_buffer(topic.encode())
            keep.append(t)
            vus.append(_Vu(_TOPIC, _U(cstr=ctypes.cast(t, ctypes.c_char_p))))
            vb = ctypes.create_string_buffer(value, len(value))
            keep.append(vb)
            vus.append(_Vu(_VALUE, _U(mem=_Mem(ctypes.cast(vb, ctypes.c_void_p), len(value)))))
            if key is not None:
                kb = ctypes.create_string_buffer(key, len(key))
                keep.append(kb)
                vus.append(_Vu(_KEY, _U(mem=_Mem(ctypes.cast(kb, ctypes.c_void_p), len(key)))))
            for name, hv in headers:
                nb, hb = ctypes.create_string_buffer(name), ctypes.create_string_buffer(hv, len(hv))
                keep += [nb, hb]
                hdr = _Header(
                    ctypes.cast(nb, ctypes.c_char_p), ctypes.cast(hb, ctypes.c_void_p), len(hv)
                )
                vus.append(_Vu(_HEADER, _U(header=hdr)))
            arr = (_Vu * len(vus))(*vus)
            e = lib.rd_kafka_produceva(rk, arr, len(vus))
            if e:
                raise RuntimeError(lib.rd_kafka_error_string(e).decode())
        lib.rd_kafka_flush(rk, 30_000)
        if lib.rd_kafka_outq_len(rk) != 0:
            raise RuntimeError("records not delivered within 30 s")
    finally:
        lib.rd_kafka_destroy(rk)
