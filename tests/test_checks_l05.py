"""Lesson 05's checks, both ways: the notebook's reference answers (and the lesson's own gatewaylab.eventloop pieces)
pass, and wrong answers (the mistakes learners make) fail with a message that says what to fix. 05.2 serves real
clients, 05.3 measures a real loop's lag, so these tests do too."""


import pytest

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, failure_messages, nothing_left_running

NOTEBOOK = SolutionNotebook("05_async_io.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l05-checks"),  # timing checks: not beside each other on the same cores
    # A wrong answer's thread may die of the check's lookup error, as a learner's would: not a test error.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


def wrong(source: str, name: str):
    """A wrong answer written out in full, defined after the setup cell."""
    return NOTEBOOK.define(source, name)


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-05"):
        yield


def failed(report, words):
    """The first failed case whose name contains `words`."""
    return next(r for r in report.results if words in r.name and not r.passed)


# --- 05.1 step --------------------------------------------------------------------------------------------------------

def test_the_lessons_own_step_passes():
    from gatewaylab.eventloop import step

    assert run_check("05.1", step).passed


def test_a_step_that_sleeps_itself_is_told_not_to():
    answer = variant("step", ("""            wake_up = time.monotonic() + seconds
            heapq.heappush(loop.sleeping, (wake_up, next(loop.numbers), task))""",
                              """            time.sleep(seconds)
            loop.ready.append(task)"""))
    message = failed(run_check("05.1", answer), "sleep").message
    assert "must not sleep itself" in message


def test_a_wake_up_time_of_the_seconds_alone_fails():
    answer = variant("step", ("wake_up = time.monotonic() + seconds", "wake_up = seconds"))
    report = run_check("05.1", answer)
    assert "time.monotonic() + seconds" in failed(report, "sleep").message
    assert not failed(report, "whole loop").passed  # the tickers wake at once


def test_a_list_append_instead_of_a_heap_fails():
    answer = variant("step", ("heapq.heappush(loop.sleeping, (wake_up, next(loop.numbers), task))",
                              "loop.sleeping.append((wake_up, next(loop.numbers), task))"))
    assert "heapq.heappush" in failed(run_check("05.1", answer), "sleep").message


def test_entries_without_a_tie_breaking_number_fail():
    answer = variant("step", ("(wake_up, next(loop.numbers), task)", "(wake_up, task)"))
    assert "breaks ties" in failed(run_check("05.1", answer), "sleep").message


def test_a_wake_up_time_on_the_wall_clock_is_told_to_use_monotonic():
    answer = variant("step", ("wake_up = time.monotonic() + seconds", "wake_up = time.time() + seconds"))
    message = failed(run_check("05.1", answer), "sleep").message
    assert "use time.monotonic() + seconds, not time.time()" in message


def test_a_tie_breaker_in_the_wrong_place_points_at_the_entry_shape():
    answer = variant("step", ("(wake_up, next(loop.numbers), task)", "(wake_up, task, next(loop.numbers))"))
    assert "shape of the heap entry" in failed(run_check("05.1", answer), "sleep").message


def test_unpacking_the_request_fails_for_a_bare_yield_and_a_triple():
    answer = wrong('''
def step(loop, task):
    try:
        request = task.generator.send(None)
    except StopIteration as end:
        task.done, task.result = True, end.value
        return
    except Exception as error:
        task.done, task.error = True, error
        return
    kind, argument = request  # None: TypeError; a triple: ValueError, out of step()
    if kind == "sleep":
        heapq.heappush(loop.sleeping, (time.monotonic() + argument, next(loop.numbers), task))
    elif kind == "recv":
        loop.selector.register(argument, selectors.EVENT_READ, task)
    elif kind == "send":
        loop.selector.register(argument, selectors.EVENT_WRITE, task)
    else:
        task.generator.close()
        task.done, task.error = True, ValueError(f"{task.name} yielded {request!r}")
''', "step")
    report = run_check("05.1", answer)
    message = failed(report, "does not know").message
    assert "None (a bare yield)" in message and "Check its shape first" in message
    assert [r.name for r in report.results if not r.passed] == [failed(report, "does not know").name]


def test_unpacking_a_triple_is_told_to_check_the_shape():
    answer = variant("step", ("    match request:\n", """    if not isinstance(request, tuple):
        request = ("?", request)
    kind, argument = request
    match request:
"""))
    message = failed(run_check("05.1", answer), "does not know").message
    assert "('sleep', 0.1, 'extra')" in message and "Check its shape first" in message


def test_send_registered_for_reading_fails():
    answer = variant("step", ("loop.selector.register(sock, selectors.EVENT_WRITE, task)",
                              "loop.selector.register(sock, selectors.EVENT_READ, task)"))
    report = run_check("05.1", answer)
    case = failed(report, "register")
    assert "EVENT_WRITE" in case.message and case.got == "'EVENT_READ'"


def test_a_step_that_takes_stop_iteration_for_an_error_fails():
    answer = variant("step", ("""    except StopIteration as end:
        task.done, task.result = True, end.value
        return
""", ""))
    assert "that is how a task *returns*" in failed(run_check("05.1", answer), "returns").message


def test_a_step_that_lets_stop_iteration_escape_fails():
    answer = wrong('''
def step(loop, task):
    what, argument = task.generator.send(None)  # no try: a task that returns raises StopIteration here
    if what == "sleep":
        heapq.heappush(loop.sleeping, (time.monotonic() + argument, next(loop.numbers), task))
    elif what == "recv":
        loop.selector.register(argument, selectors.EVENT_READ, task)
    else:
        loop.selector.register(argument, selectors.EVENT_WRITE, task)
''', "step")
    assert "StopIteration escaped" in failure_messages(run_check("05.1", answer))


def test_a_step_that_forgets_the_return_value_fails():
    answer = variant("step", ("task.done, task.result = True, end.value", "task.done = True"))
    assert "result 42" in failed(run_check("05.1", answer), "returns").message


def test_a_step_that_lets_a_tasks_error_escape_fails():
    answer = variant("step", ("""    except Exception as error:  # the task raised: it ends, the loop goes on
        task.done, task.error = True, error
        return
""", ""))
    assert "would stop the whole loop" in failed(run_check("05.1", answer), "raises").message


def test_an_unknown_request_that_raises_out_of_step_fails():
    answer = variant("step", ("""            task.generator.close()
            task.done = True
            task.error = ValueError(f"{task.name} yielded {request!r}")""",
                              """            raise ValueError(f"{task.name} yielded {request!r}")"""))
    assert "instead, so the loop goes on" in failed(run_check("05.1", answer), "does not know").message


def test_an_unknown_request_left_open_fails():
    answer = variant("step", ("            task.generator.close()\n", ""))
    assert "task.generator.close()" in failed(run_check("05.1", answer), "does not know").message


# --- 05.2 slow_hello --------------------------------------------------------------------------------------------------

def test_the_lessons_own_slow_hello_passes():
    from gatewaylab.eventloop import slow_hello

    assert run_check("05.2", slow_hello).passed


def test_time_sleep_in_the_task_serialises_the_clients():
    answer = variant("slow_hello", ('yield "sleep", delay', "time.sleep(delay)"))
    case = failed(run_check("05.2", answer), "10 clients")
    assert "time.sleep(delay)" in case.message and "one after another" in case.message


def test_recv_without_asking_the_loop_first_raises_blocking_io_error():
    answer = variant("slow_hello", ('            yield "recv", conn\n', ""))
    assert "Yield (\"recv\", conn) before every conn.recv()" in failure_messages(run_check("05.2", answer))


def test_one_recv_answers_before_the_head_is_whole():
    answer = variant("slow_hello", ('while b"\\r\\n\\r\\n" not in head:', "for _ in range(1):"))
    case = failed(run_check("05.2", answer), "two pieces")
    assert "before the request head was complete" in case.message


def test_a_task_that_never_closes_the_connection_fails():
    answer = wrong('''
def slow_hello(conn, delay):
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        yield "recv", conn
        chunk = conn.recv(4096)
        if not chunk:
            return
        head += chunk
    yield "sleep", delay
    yield "send", conn
    conn.send(RESPONSE)  # and the connection stays open
''', "slow_hello")
    assert "`with conn:`" in failed(run_check("05.2", answer), "closed").message


def test_a_task_that_ignores_a_client_leaving_spins():
    answer = variant("slow_hello", ("""            if not chunk:
                return  # the client left
""", ""))
    assert "spins for ever" in failed(run_check("05.2", answer), "does not keep asking").message


def test_a_thread_per_client_is_not_one_thread():
    answer = wrong('''
def slow_hello(conn, delay):
    import threading

    def serve():
        with conn:
            conn.setblocking(True)
            conn.recv(4096)
            time.sleep(delay)
            conn.sendall(RESPONSE)

    threading.Thread(target=serve, daemon=True).start()
    return
    yield
''', "slow_hello")
    case = failed(run_check("05.2", answer), "10 clients")
    assert "more thread(s) ran" in case.message


def test_a_blocking_recv_lets_one_silent_client_stall_the_others():
    answer = wrong('''
def slow_hello(conn, delay):
    with conn:
        conn.setblocking(True)  # and recv() without asking the loop first
        head = b""
        while b"\\r\\n\\r\\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        yield "sleep", delay
        conn.sendall(RESPONSE)
''', "slow_hello")
    # (10 clients that all send at once would be served in about one delay: the silent one shows it)
    message = failed(run_check("05.2", answer), "sends nothing").message
    assert "blocking" in message and 'yield ("recv", conn) before every conn.recv()' in message


def test_busy_waiting_for_the_delay_fails():
    answer = variant("slow_hello", ('        yield "sleep", delay',
                                    """        until = time.monotonic() + delay
        while time.monotonic() < until:
            yield "sleep", 0"""))
    assert "busy-waiting" in failed(run_check("05.2", answer), "10 clients").message


def test_sendall_without_yielding_send_first_fails():
    answer = variant("slow_hello", ("""        unsent = memoryview(RESPONSE)
        while unsent:
            yield "send", conn
            unsent = unsent[conn.send(unsent):]""", "        conn.sendall(RESPONSE)"))
    assert 'without yielding ("send", conn)' in failure_messages(run_check("05.2", answer))


def test_no_with_conn_is_caught_though_the_garbage_collector_closes_it():
    answer = wrong('''
def slow_hello(conn, delay):
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        yield "recv", conn
        chunk = conn.recv(4096)
        if not chunk:
            return
        head += chunk
    yield "sleep", delay
    unsent = memoryview(RESPONSE)
    while unsent:
        yield "send", conn
        unsent = unsent[conn.send(unsent):]
''', "slow_hello")
    assert "left its connection open" in failure_messages(run_check("05.2", answer))


def test_a_plain_function_is_told_to_be_a_generator():
    answer = wrong('''
def slow_hello(conn, delay):
    conn.close()
''', "slow_hello")
    assert "not a generator" in failure_messages(run_check("05.2", answer))


# --- 05.3 off_the_loop ------------------------------------------------------------------------------------------------

def test_calling_func_inside_the_async_function_stalls_the_loop():
    answer = variant("off_the_loop", ("return await asyncio.to_thread(func, *args, **kwargs)",
                                      "return func(*args, **kwargs)"))
    case = failed(run_check("05.3", answer), "never stalls")
    assert "woke" in case.message and "asyncio.to_thread" in case.message


def test_a_plain_wrapper_is_told_to_be_async():
    answer = wrong('''
def off_the_loop(func):
    def call(*args, **kwargs):
        return func(*args, **kwargs)
    return call
''', "off_the_loop")
    assert "must return an async function" in failure_messages(run_check("05.3", answer))


def test_a_plain_def_returning_to_threads_coroutine_is_told_to_be_async(recwarn):
    answer = wrong('''
def off_the_loop(func):
    def call(*args, **kwargs):
        return asyncio.to_thread(func, *args, **kwargs)  # a coroutine: awaitable, but call is no async function
    return call
''', "off_the_loop")
    report = run_check("05.3", answer)
    assert not any(r.passed for r in report.results)
    assert "yours is a plain function" in failure_messages(report)
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_a_missing_await_is_told_the_wrapper_returned_a_coroutine(recwarn):
    answer = variant("off_the_loop", ("return await asyncio.to_thread(", "return asyncio.to_thread("))
    report = run_check("05.3", answer)
    assert "the wrapper returned a coroutine" in failure_messages(report)
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_a_thread_joined_at_once_still_blocks():
    answer = wrong('''
def off_the_loop(func):
    import threading

    async def call(*args, **kwargs):
        results = []
        worker = threading.Thread(target=lambda: results.append(func(*args, **kwargs)))
        worker.start()
        worker.join()  # the loop's thread waits for it
        return results[0]
    return call
''', "off_the_loop")
    assert "stalled every task" in failed(run_check("05.3", answer), "never stalls").message


def test_dropping_keyword_arguments_fails():
    answer = variant("off_the_loop", ("asyncio.to_thread(func, *args, **kwargs)", "asyncio.to_thread(func, *args)"))
    assert "pass *args and **kwargs on" in failed(run_check("05.3", answer), "keyword arguments").message


def test_swallowing_the_exception_fails():
    answer = wrong('''
def off_the_loop(func):
    async def call(*args, **kwargs):
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except Exception:
            return "error"
    return call
''', "off_the_loop")
    assert "let the exception through" in failed(run_check("05.3", answer), "exception").message


def test_run_in_executor_with_keyword_arguments_fails():
    # run_in_executor passes positional arguments only: the learner's call raises TypeError for keywords.
    answer = wrong('''
def off_the_loop(func):
    async def call(*args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(None, func, *args, **kwargs)
    return call
''', "off_the_loop")
    report = run_check("05.3", answer)
    assert report.results[0].passed
    assert "TypeError" in failed(report, "keyword arguments").message


def test_a_pool_kept_for_ever_is_told_it_leaves_threads():
    answer = wrong('''
import concurrent.futures
KEPT = concurrent.futures.ThreadPoolExecutor(8)  # never shut down


def off_the_loop(func):
    async def call(*args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(KEPT, lambda: func(*args, **kwargs))
    return call
''', "off_the_loop")
    report = run_check("05.3", answer)
    assert "never shut down" in failure_messages(report)
    answer.__globals__["KEPT"].shutdown()  # (so that this test leaves no thread either)


# --- 05.4 deadline ----------------------------------------------------------------------------------------------------

def test_wait_for_passes_too():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            return await asyncio.wait_for(func(*args, **kwargs), seconds)
        return call
    return decorate
''', "deadline")
    assert run_check("05.4", answer).passed


def test_swallowing_the_timeout_fails():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            try:
                async with asyncio.timeout(seconds):
                    return await func(*args, **kwargs)
            except TimeoutError:
                return None
        return call
    return decorate
''', "deadline")
    assert "Don't catch the TimeoutError" in failed(run_check("05.4", answer), "overruns").message


def test_asyncio_wait_with_a_timeout_does_not_cancel():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            task = asyncio.ensure_future(func(*args, **kwargs))
            done, _ = await asyncio.wait([task], timeout=seconds)
            if not done:
                raise TimeoutError
            return task.result()
        return call
    return decorate
''', "deadline")
    report = run_check("05.4", answer)
    assert "never cancelled" in failed(report, "overruns").message


def test_checking_the_time_afterwards_is_too_late():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            started = time.monotonic()
            result = await func(*args, **kwargs)
            if time.monotonic() - started > seconds:
                raise TimeoutError
            return result
        return call
    return decorate
''', "deadline")
    assert "not when time was up" in failed(run_check("05.4", answer), "overruns").message


def test_one_deadline_for_all_calls_fails():
    answer = wrong('''
def deadline(seconds):
    ends = time.monotonic() + seconds  # when decorating: one deadline for every call

    def decorate(func):
        async def call(*args, **kwargs):
            async with asyncio.timeout(max(0.0, ends - time.monotonic())):
                return await func(*args, **kwargs)
        return call
    return decorate
''', "deadline")
    assert "counts from the start of each call" in failed(run_check("05.4", answer), "its own").message


def test_turning_cancellation_into_a_timeout_fails():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            try:
                async with asyncio.timeout(seconds):
                    return await func(*args, **kwargs)
            except asyncio.CancelledError:
                raise TimeoutError("cancelled")
        return call
    return decorate
''', "deadline")
    case = failed(run_check("05.4", answer), "cancelling the caller")
    assert "let CancelledError through" in case.message


def test_a_call_in_a_task_of_its_own_is_not_cancelled_with_its_caller():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            task = asyncio.ensure_future(func(*args, **kwargs))
            done, _ = await asyncio.wait([task], timeout=seconds)  # the caller's cancel stops here only
            if not done:
                task.cancel()
                await asyncio.wait([task])
                raise TimeoutError
            return task.result()
        return call
    return decorate
''', "deadline")
    report = run_check("05.4", answer)
    assert [r.passed for r in report.results[:3]] == [True, True, True]
    assert "went on running" in failed(report, "cancelling the caller").message


def test_a_version_that_never_cancels_fails_the_caller_case_too():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            task = asyncio.ensure_future(func(*args, **kwargs))
            done, _ = await asyncio.wait([task], timeout=seconds)
            if not done:
                raise TimeoutError
            return task.result()
        return call
    return decorate
''', "deadline")
    assert "went on running" in failed(run_check("05.4", answer), "cancelling the caller").message


def test_cancelling_without_waiting_is_told_to_await_the_cancelled_task():
    answer = wrong('''
def deadline(seconds):
    def decorate(func):
        async def call(*args, **kwargs):
            task = asyncio.ensure_future(func(*args, **kwargs))
            try:
                done, _ = await asyncio.wait([task], timeout=seconds)
            except asyncio.CancelledError:
                task.cancel()
                raise
            if not done:
                task.cancel()  # and no await: the call has not stopped yet
                raise TimeoutError
            return task.result()
        return call
    return decorate
''', "deadline")
    assert "Await the cancelled task" in failed(run_check("05.4", answer), "overruns").message
