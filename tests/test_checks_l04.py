"""Lesson 04's checks, both ways: the notebook's reference answers pass, the stubs are "not solved", and wrong answers
(the mistakes learners make) fail with a message that says what to fix. The server-loop checks measure real servers,
so these tests do too."""

import socket
import time
from pathlib import Path

import pytest

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, failure_messages, nothing_left_running
from gatewaylab.load import LoadResult, RequestRecord

NOTEBOOK = SolutionNotebook("04_wsgi_and_concurrency.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l04-checks"),  # timing checks: not beside each other on the same cores
    # Wrong answers let handle()'s ConnectionResetError end their threads, as a learner's code would: not a test error.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


def wrong(source: str, name: str):
    """A wrong answer written out in full, defined after the setup cell."""
    return NOTEBOOK.define(source, name)


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-04"):
        yield


def test_handling_in_the_accept_loop_is_sequential_and_fails():
    answer = wrong('''
def threaded_server(listener, handle):
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                handle(conn)  # in the accepting thread: one connection at a time
            except OSError:
                pass
''', "threaded_server")
    report = run_check("04.1", answer)
    assert not report.results[0].passed
    assert "one at a time" in report.results[0].message and report.results[0].got == "1"


def test_joining_each_thread_is_sequential_too():
    answer = variant("threaded_server", ("threading.Thread(target=serve_and_close, args=(conn,), daemon=True).start()",
                     "worker = threading.Thread(target=serve_and_close, args=(conn,)); worker.start(); worker.join()"))
    assert "one at a time" in failure_messages(run_check("04.1", answer))


def test_never_closing_the_connection_fails():
    answer = wrong('''
def threaded_server(listener, handle):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()  # nobody closes conn
''', "threaded_server")
    report = run_check("04.1", answer)
    closing = [r for r in report.results if "closed" in r.name][0]
    assert not closing.passed and "close every connection" in closing.message


def test_a_sequential_loop_that_crashes_on_a_disconnect_is_told_so():
    answer = wrong('''
def threaded_server(listener, handle):
    while True:
        conn, _ = listener.accept()
        with conn:
            handle(conn)  # a client leaving mid-request raises here, and ends the loop
''', "threaded_server")
    report = run_check("04.1", answer)
    leaving = [r for r in report.results if "leave mid-request" in r.name][0]
    assert not leaving.passed and "crashed with ConnectionResetError" in leaving.message


def test_a_loop_that_outlives_its_server_is_told_to_end():
    # It swallows accept()'s OSError and goes on; it gives up by itself after 7 s so that the test ends cleanly.
    answer = wrong('''
def threaded_server(listener, handle):
    give_up = time.monotonic() + 7
    while time.monotonic() < give_up:
        try:
            conn, _ = listener.accept()
        except OSError:
            time.sleep(0.05)
            continue
        threading.Thread(target=lambda c=conn: (handle(c), c.close()), daemon=True).start()
''', "threaded_server")
    report = run_check("04.1", answer)
    assert "still running after the server was stopped" in report.results[0].message


def test_closing_after_handle_without_finally_leaves_a_raised_connection_open():
    # The close is skipped when handle raises: the thread dies with a traceback, and the client waits.
    answer = variant("threaded_server", ("target=serve_and_close, args=(conn,)",
                                         "target=lambda c=conn: (handle(c), c.close())"))
    report = run_check("04.1", answer)
    assert [r.passed for r in report.results] == [True, True, False, False, True]
    assert "did not close that connection" in report.results[2].message
    assert "`with conn:`" in report.results[2].message
    assert "nothing caught it" in report.results[3].message  # the clients that left killed their threads


def test_a_thread_that_lets_handles_error_escape_is_told_to_catch_it():
    # The connection is closed (with conn:), but the ConnectionResetError ends the thread with a traceback.
    answer = variant("threaded_server", ("""            try:
                handle(conn)
            except OSError:
                pass  # the client went away: nobody is left to answer""", "            handle(conn)"))
    report = run_check("04.1", answer)
    failed = [r for r in report.results if not r.passed]
    assert [r.name for r in failed] == ["a connection is closed even when handle(conn) raises",
                                        "clients that leave mid-request don't stop the server"], str(report)
    assert all("raised ConnectionResetError" in r.message and "Catch OSError around handle(conn), inside the "
               "thread" in r.message for r in failed)


def test_threads_started_without_a_daemon_argument_pass():
    # serve_socket runs the loop in a daemon thread, and a new thread inherits daemon from the thread starting it.
    answer = variant("threaded_server", ("args=(conn,), daemon=True)", "args=(conn,))"))
    assert run_check("04.1", answer).passed


def test_threads_that_are_not_daemon_fail():
    # (Left out, daemon is inherited from the thread that starts them, and serve_socket's thread is a daemon.)
    answer = variant("threaded_server", ("args=(conn,), daemon=True)", "args=(conn,), daemon=False)"))
    report = run_check("04.1", answer)
    failed = [r for r in report.results if not r.passed]
    # reported under the case about daemon threads, not under the timing case, which they pass
    assert [r.name for r in failed] == ["handle(conn) runs in daemon threads, which cannot keep Python from exiting"]
    assert "not daemon threads (daemon=False?)" in failed[0].message
    assert "Python waits for every non-daemon thread" in failed[0].message


# --- 04.2 pooled_server -----------------------------------------------------------------------------------------------

def test_a_thread_per_connection_is_not_a_bounded_pool():
    answer = wrong('''
def pooled_server(listener, handle, pool_size):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=lambda c=conn: (handle(c), c.close()), daemon=True).start()
''', "pooled_server")
    report = run_check("04.2", answer)
    assert "never runs more than pool_size" in report.results[0].message
    assert report.results[0].got == "8" and report.results[0].expected == "'at most 2'"


def test_a_pool_of_one_is_sequential():
    answer = variant("pooled_server", ("ThreadPoolExecutor(max_workers=pool_size)", "ThreadPoolExecutor(max_workers=1)"))
    assert "only 1 handle() call(s) ran at the same time" in failure_messages(run_check("04.2", answer))


def test_a_pool_size_written_in_is_caught_by_another_size():
    answer = variant("pooled_server", ("ThreadPoolExecutor(max_workers=pool_size)", "ThreadPoolExecutor(max_workers=2)"))
    report = run_check("04.2", answer)
    assert report.results[0].passed  # the first case uses a pool of 2 ...
    assert "pool_size=3" in report.results[1].message  # ... the second a pool of 3


def test_a_semaphore_that_is_never_released_empties_the_pool():
    # (It gives up waiting for the semaphore after 4 s, so that the test ends cleanly.)
    answer = wrong('''
def pooled_server(listener, handle, pool_size):
    free = threading.Semaphore(pool_size)

    def serve(conn):
        with conn:
            handle(conn)  # forgot: free.release()

    give_up = time.monotonic() + 4
    while time.monotonic() < give_up:
        if not free.acquire(timeout=0.05):
            continue
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
''', "pooled_server")
    report = run_check("04.2", answer)
    assert "got no complete answer" in report.results[0].message and "go back to work" in report.results[0].message


def test_pool_workers_that_die_with_handle_empty_the_pool():
    # A pool of threads started once, but an error in handle ends the worker that met it.
    answer = wrong('''
def pooled_server(listener, handle, pool_size):
    import queue

    waiting = queue.Queue()

    def worker():
        while (conn := waiting.get()) is not None:
            with conn:
                handle(conn)  # a client that left makes this raise: the worker dies with it

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(pool_size)]
    for thread in workers:
        thread.start()
    try:
        while True:
            waiting.put(listener.accept()[0])
    finally:
        for thread in workers:
            waiting.put(None)
''', "pooled_server")
    report = run_check("04.2", answer)
    assert [r.passed for r in report.results] == [True, True, True, False, False]
    assert "nothing caught it" in report.results[3].message and "shrinks" in report.results[3].message
    assert "left mid-request" in report.results[4].message and "go back to work" in report.results[4].message


def test_a_semaphore_around_a_thread_per_connection_is_not_a_pool():
    # At most pool_size run handle at once, but every connection still gets a thread of its own.
    answer = wrong('''
def pooled_server(listener, handle, pool_size):
    free = threading.Semaphore(pool_size)

    def serve(conn):
        with free, conn:
            try:
                handle(conn)
            except OSError:
                pass

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
''', "pooled_server")
    report = run_check("04.2", answer)
    first = report.results[0]
    assert not first.passed and "a pool starts pool_size threads once and reuses them; yours started 8" in first.message
    assert first.got == "'8 threads'"


def test_waiting_for_each_future_in_the_accept_loop_is_told_so():
    # A real pool of pool_size threads, but .result() holds the loop until the connection is served.
    answer = variant("pooled_server", ("pool.submit(serve_and_close, conn)",
                                       "pool.submit(serve_and_close, conn).result()"))
    report = run_check("04.2", answer)
    first = report.results[0]
    assert not first.passed and first.got == "1"
    assert "waiting in Future.result()" in first.message and "accept() is not called again" in first.message
    mixed = [r for r in report.results if "slow request" in r.name][0]
    assert not mixed.passed and "Future.result()" in mixed.message and "batch" not in mixed.message


def test_a_pool_per_connection_is_told_that_the_with_block_waits():
    # Each connection gets a pool of its own, and leaving its with-block waits for the connection to be served.
    answer = wrong('''
def pooled_server(listener, handle, pool_size):
    def serve_and_close(conn):
        with conn:
            try:
                handle(conn)
            except OSError:
                pass

    while True:
        conn, _ = listener.accept()
        with ThreadPoolExecutor(max_workers=pool_size) as pool:
            pool.submit(serve_and_close, conn)
''', "pooled_server")
    report = run_check("04.2", answer)
    first = report.results[0]
    assert not first.passed and first.got == "1"
    assert "waiting for the pool to shut down" in first.message and "holds up accept()" in first.message
    mixed = [r for r in report.results if "slow request" in r.name][0]
    assert not mixed.passed and "with-block" in mixed.message and "batch" not in mixed.message


def test_a_pool_of_one_is_not_told_about_waits_it_does_not_make():
    answer = variant("pooled_server", ("ThreadPoolExecutor(max_workers=pool_size)", "ThreadPoolExecutor(max_workers=1)"))
    message = run_check("04.2", answer).results[0].message
    assert "use all pool_size workers" in message and "Future.result()" not in message and "shut down" not in message


def test_batches_of_pool_size_threads_hold_the_fast_requests_up():
    # Start pool_size threads, wait for all of them, repeat: a staircase for equal requests, but a slow request
    # keeps the next batch waiting.
    answer = wrong('''
def pooled_server(listener, handle, pool_size):
    def serve_and_close(conn):
        with conn:
            try:
                handle(conn)
            except OSError:
                pass

    while True:
        batch = []
        for _ in range(pool_size):
            conn, _ = listener.accept()
            batch.append(threading.Thread(target=serve_and_close, args=(conn,), daemon=True))
            batch[-1].start()
        for thread in batch:
            thread.join()
''', "pooled_server")
    report = run_check("04.2", answer)
    mixed = [r for r in report.results if "slow request" in r.name][0]
    assert not mixed.passed and "wait for all of them to end" in mixed.message
    assert float(mixed.got.strip("'").split(",")[1]) > 0.8  # the second fast answer waited for the slow one
    assert "reuses them" in report.results[0].message  # and it starts a thread per connection too


# --- 04.3 predict_wall_time -------------------------------------------------------------------------------------------

def test_a_pool_without_ceil_fails():
    answer = variant("predict_wall_time", ("math.ceil(clients / pool) * delay", "clients / pool * delay"))
    assert "predict_wall_time('pool', 5, 0.2, pool=2)" in failure_messages(run_check("04.3", answer))


def test_a_model_in_milliseconds_fails():
    answer = variant("predict_wall_time", ("return clients * delay", "return clients * delay * 1000"))
    report = run_check("04.3", answer)
    assert not report.results[0].passed and report.results[0].expected == "5.0"
    live = [r for r in report.results if "real servers" in r.name][0]
    assert not live.passed and "measured" in live.message


def test_a_pool_without_ceil_is_shown_tidy_numbers():
    answer = variant("predict_wall_time", ("math.ceil(clients / pool) * delay", "clients / pool * delay"))
    report = run_check("04.3", answer)
    pool = [r for r in report.results if r.name.startswith("pool")][0]
    assert pool.expected == "0.6" and pool.got == "0.5"  # 3 x 0.2, not 0.6000000000000001


def test_threads_modelled_as_taking_no_time_fail_against_real_servers_too():
    answer = variant("predict_wall_time", ("return float(delay)", "return 0.0"))
    report = run_check("04.3", answer)
    live = [r for r in report.results if "real servers" in r.name][0]
    assert not live.passed and live.message.startswith("threaded server") and live.got == "0.0"


def test_sequential_modelled_one_delay_short_fails_against_real_servers_too():
    answer = variant("predict_wall_time", ("return clients * delay", "return (clients - 1) * delay"))
    report = run_check("04.3", answer)
    live = [r for r in report.results if "real servers" in r.name][0]
    assert not live.passed and live.message.startswith("sequential server") and live.got == "0.75"


def test_a_negative_pool_must_raise():
    answer = variant("predict_wall_time", ("if not (isinstance(pool, int) and pool >= 1):", "if not pool:"))
    report = run_check("04.3", answer)
    assert "predict_wall_time('pool', 4, 0.1, pool=-1) has a bad argument" in failure_messages(report)
    assert report.results[-2].got == "-0.4"


@pytest.mark.parametrize("call", ["predict_wall_time('sequential', 2.5, 0.1, pool=None)",
                                  "predict_wall_time('pool', 4, 0.1, pool=1.5)",
                                  "predict_wall_time('threaded', 4, nan, pool=None)",
                                  "predict_wall_time('sequential', 4, inf, pool=None)"])
def test_a_model_taking_fractional_counts_or_non_finite_delays_fails(call):
    # Range checks alone: 2.5 clients, a pool of 1.5, and a delay of NaN or infinity all pass them.
    answer = wrong('''
def predict_wall_time(kind, clients, delay, pool=None):
    if kind not in ("sequential", "threaded", "pool") or clients < 1 or delay < 0 \
            or (kind == "pool" and (pool is None or pool < 1)):
        raise ValueError("bad arguments")
    if kind == "sequential":
        return clients * delay
    if kind == "threaded":
        return float(delay)
    return math.ceil(clients / pool) * delay
''', "predict_wall_time")
    # Each bad call on its own: the ones before it made to raise, so the case reaches it.
    bad = ["2.5", "pool=1.5", "nan", "inf"]
    index = [c for c in bad if c in call][0]
    earlier = bad[:bad.index(index)]

    def answer_raising_earlier(kind, clients, delay, pool=None):
        seen = f"{clients} {delay} pool={pool}"
        if any(e in seen for e in earlier):
            raise ValueError("an earlier bad call")
        return answer(kind, clients, delay, pool=pool)

    report = run_check("04.3", answer_raising_earlier)
    bad_case = [r for r in report.results if r.name == "bad arguments raise ValueError"][0]
    assert not bad_case.passed and f"{call} has a bad argument" in bad_case.message, bad_case.message
    assert all(r.passed for r in report.results if r is not bad_case)


def test_threads_modelled_as_sequential_fail():
    answer = variant("predict_wall_time", ("return float(delay)", "return clients * delay"))
    assert "predict_wall_time('threaded', 10, 0.5, pool=None)" in failure_messages(run_check("04.3", answer))


def test_a_model_without_argument_checks_fails():
    answer = wrong('''
def predict_wall_time(kind, clients, delay, pool=None):
    if kind == "sequential":
        return clients * delay
    if kind == "pool":
        return math.ceil(clients / pool) * delay  # TypeError for pool=None, ZeroDivisionError for 0
    return float(delay)  # any other kind, even a misspelt one
''', "predict_wall_time")
    messages = failure_messages(run_check("04.3", answer))
    assert "predict_wall_time('forking', 4, 0.1, pool=None) has a bad argument" in messages


def test_a_model_raising_the_wrong_exception_is_told_which_one():
    answer = variant("predict_wall_time", ('raise ValueError(f"a pool needs', 'raise TypeError(f"a pool needs'))
    assert "should raise ValueError" in failure_messages(run_check("04.3", answer))


# --- 04.4 idle_gaps ---------------------------------------------------------------------------------------------------

def test_idle_gaps_in_the_order_sent_fails():
    answer = variant("idle_gaps", ("ends = sorted(record.end", "ends = list(record.end"))
    messages = failure_messages(run_check("04.4", answer))
    assert "made-up run" in messages and "sort them first" in messages


def test_idle_gaps_counting_failed_requests_fails():
    answer = variant("idle_gaps", (" if record.status is not None", ""))
    report = run_check("04.4", answer)
    assert not report.results[0].passed and report.results[0].got == "[(0.0, 0.75), (2.375, 3.0)]"
    assert "got no response (status None)" in report.results[0].message


def test_idle_gaps_counting_only_2xx_answers_fails():
    answer = variant("idle_gaps", ("if record.status is not None", "if record.ok"))
    report = run_check("04.4", answer)
    assert not report.results[0].passed and report.results[0].got == "[(0.0, 0.75), (1.0, 1.75)]"
    assert "a response of any status counts" in report.results[0].message


def test_idle_gaps_starting_at_the_first_answer_misses_the_first_gap():
    answer = variant("idle_gaps", ("gaps, previous = [], 0.0", "gaps, previous = [], ends[0]"))
    assert not run_check("04.4", answer).results[0].passed


def test_idle_gaps_with_greater_or_equal_fails():
    answer = variant("idle_gaps", ("end - previous > longer_than", "end - previous >= longer_than"))
    report = run_check("04.4", answer)
    assert not report.results[1].passed  # steady ends every 0.25 s are not gaps of "more than" 0.25 s
    assert "use >, not >=" in report.results[1].message
    assert "(1.75, 2.25)" in report.results[0].got  # nor is a gap of exactly 0.5 s


def test_idle_gaps_from_start_times_fails():
    answer = variant("idle_gaps", ("sorted(record.end for", "sorted(record.start for"))
    assert not run_check("04.4", answer).results[0].passed


def test_idle_gaps_as_lists_are_told_the_type():
    answer = variant("idle_gaps", ("gaps.append((previous, end))", "gaps.append([previous, end])"))
    report = run_check("04.4", answer)
    assert "each gap must be a tuple (start, end); gap 0 is [0.0, 0.75]" in report.results[0].message
    assert "[[0.0, 0.75]" in report.results[0].got


def test_idle_gaps_as_a_generator_is_told_to_return_a_list():
    answer = variant("idle_gaps", ("return gaps", "return iter(gaps)"))
    assert "should be a list of (start, end) tuples, not list_iterator" in run_check("04.4", answer).results[0].message


def test_the_live_backlog_run_shows_retries_on_linux():
    """The phenomenon the exercise is about: with a backlog of 5, 20 clients of a sequential server meet an idle gap
    that ends about 1 s in (the first SYN retry), after 7 answers: one served, backlog + 1 queued (6 when every client
    connects before the server's first accept). Linux behaviour; other systems may refuse instead."""
    from gatewaylab.checks.l04_concurrency import _gaps
    from gatewaylab.demos import slow_wsgi_app
    from gatewaylab.load import load
    from gatewaylab.servers import serve_wsgi

    with serve_wsgi(slow_wsgi_app, name="check-04-test", server="wsgiref", backlog=5) as server:
        result = load(f"{server.url}/?delay=0.05", 20, timeout=15)
    gaps = _gaps(result, 0.5)
    assert result.ok == 20 and gaps, result
    assert 0.9 <= gaps[0][1] <= 1.5, gaps
    assert sum(record.end < gaps[0][1] for record in result.records) in (6, 7), result.records


def test_made_up_results_are_load_results():
    # The made-up runs the check builds must stay what load() returns, or the exercise would test something else.
    from gatewaylab.checks.l04_concurrency import _made_up

    result = _made_up([(0.5, 200), (0.25, None), (0.75, 500)])
    assert isinstance(result, LoadResult) and all(isinstance(r, RequestRecord) for r in result.records)
    assert result.ok == 1 and result.errors == 1 and result.status_counts[500] == 1


# --- gatewaylab.examples: the apps and the pre-fork server the lesson runs in other processes ------------------------

def _prefork_command(workers: int = 2) -> list[str]:
    import sys

    return [sys.executable, "-m", "gatewaylab.examples", "gatewaylab.examples:cpu_app", "--port", "{port}",
            "--workers", str(workers)]


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _forked_workers(pid: int, count: int) -> list[int]:
    """The parent's children, once `count` of them exist (or after 5 s). The port accepts connections as soon as the
    parent listens, which is before it forks, so a server that answers may not have all its workers yet."""
    deadline = time.monotonic() + 5
    while len(children := _children(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return children


def _gone(pid: int) -> bool:
    """The process has ended: no longer in /proc, or a zombie waiting for whoever adopted it to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_cpu_app_burns_what_it_is_asked_and_refuses_bad_input():
    from gatewaylab.examples import burn_cpu, cpu_app

    started = time.thread_time()
    assert burn_cpu(0.03) > 0 and time.thread_time() - started >= 0.03
    for query, status in (("ms=5", "200 OK"), ("ms=-1", "400 Bad Request"), ("ms=soon", "400 Bad Request"),
                          ("ms=100000", "400 Bad Request")):
        seen = []
        body = b"".join(cpu_app({"QUERY_STRING": query}, lambda s, h: seen.append(s)))
        assert seen == [status], (query, body)
    assert body.startswith(b"ms must be a number")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from Linux's /proc")
def test_prefork_serves_from_several_processes_and_leaves_none_behind():
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    from gatewaylab.servers import serve_command

    with serve_command(_prefork_command(2), name="check-04-prefork") as server:
        workers = _forked_workers(server.process.pid, 2)
        assert len(workers) == 2
        with ThreadPoolExecutor(4) as pool:  # two at a time keep both workers busy
            bodies = list(pool.map(lambda _: httpx.get(server.url + "/?ms=100", timeout=5).text, range(8)))
    answered_by = {int(body.split()[-1]) for body in bodies}
    assert answered_by == set(workers), (bodies, workers)
    assert all(_gone(pid) for pid in workers)
    with socket.socket() as probe:  # nothing listens on the port any more (connections may linger in TIME_WAIT)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))
        probe.listen()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from Linux's /proc")
def test_prefork_workers_end_when_their_parent_is_killed():
    import signal

    from gatewaylab.servers import serve_command

    server = serve_command(_prefork_command(2), name="check-04-orphans")
    try:
        workers = _forked_workers(server.process.pid, 2)
        assert len(workers) == 2
        server.process.send_signal(signal.SIGKILL)  # no chance to stop its workers
        deadline = time.monotonic() + 5
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers), "orphaned workers kept running (and kept the port busy)"
    finally:
        server.stop()


def test_prefork_refuses_bad_arguments():
    import subprocess
    import sys

    with socket.create_server(("127.0.0.1", 0)) as taken:
        for extra, message in ((["--workers", "0"], "workers must be an int >= 1"),
                               (["--port", str(taken.getsockname()[1])], "Address already in use")):
            done = subprocess.run([sys.executable, "-m", "gatewaylab.examples", "gatewaylab.examples:cpu_app",
                                   "--port", "0", *extra], capture_output=True, text=True, timeout=20)
            assert done.returncode == 1 and message in done.stderr, done
    done = subprocess.run([sys.executable, "-m", "gatewaylab.examples", "no_such_module:app"], capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 1 and "cannot import 'no_such_module'" in done.stderr, done
