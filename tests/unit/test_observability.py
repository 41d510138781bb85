import json
import logging

from shared.kafka.rdlog import RepeatFilter
from shared.logs import JsonFormatter, coords
from shared.metrics import lag_from_stats


def test_lag_from_librdkafka_stats() -> None:
    stats = {"topics": {"t": {"partitions": {
        "0": {"consumer_lag": 5}, "1": {"consumer_lag": -1}, "-1": {"consumer_lag": 0}}}}}  # fmt: skip
    assert lag_from_stats(json.dumps(stats)) == {("t", 0): 5}


def test_json_log_lines_name_the_record() -> None:
    rec = logging.makeLogRecord({"msg": "poison", "levelname": "WARNING", "name": "x",
                                 "record": coords("t", 1, 2, b"k")})  # fmt: skip
    line = json.loads(JsonFormatter().format(rec))
    assert line["record"] == {"topic": "t", "partition": 1, "offset": 2, "key": "k"}
    assert line["msg"] == "poison"


def test_repeated_librdkafka_lines_are_collapsed() -> None:
    f = RepeatFilter(interval_s=60)

    def rec(msg: str) -> logging.LogRecord:
        return logging.makeLogRecord({"msg": msg})

    assert f.filter(rec("Connect to 127.0.0.1:9092 failed (after 0ms)"))
    assert not f.filter(rec("Connect to 127.0.0.1:9092 failed (after 3ms)"))
    assert f.filter(rec("another problem"))
