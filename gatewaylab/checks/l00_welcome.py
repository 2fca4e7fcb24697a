"""Lesson 00's warm-up: an exercise small enough to show how checks, hints and progress work."""

from gatewaylab.grading import CaseFailed, Exercise, expect_equal

status_line = Exercise(
    "00.1", "Your first check: an HTTP status line",
    points=2,
    answer="a function status_line(code: int, reason: str) returning the status line as bytes",
    params=2,
    hints=[
        "A status line has three parts separated by single spaces: the version HTTP/1.1, the three-digit code and "
        "the reason phrase. It ends with carriage return + line feed, written \"\\r\\n\" in Python.",
        "Build the line as text with an f-string, then turn it into bytes with .encode(\"ascii\"): what travels over "
        "a socket is bytes, not str.",
        "return f\"HTTP/1.1 {code} {reason}\\r\\n\".encode(\"ascii\")",
    ],
)


@status_line.case("returns bytes")
def _(answer):
    result = answer(200, "OK")
    if not isinstance(result, bytes):
        raise CaseFailed(
            f"status_line must return bytes (like b\"...\"), not {type(result).__name__}; a str becomes bytes "
            "with .encode(\"ascii\")", got=result)


@status_line.case("200 OK")
def _(answer):
    expect_equal(answer(200, "OK"), b"HTTP/1.1 200 OK\r\n", "status_line(200, 'OK')")


@status_line.case("a reason phrase with spaces: 404 Not Found")
def _(answer):
    expect_equal(answer(404, "Not Found"), b"HTTP/1.1 404 Not Found\r\n", "status_line(404, 'Not Found')")
