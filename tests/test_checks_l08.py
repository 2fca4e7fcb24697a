"""Lesson 08's checks, both ways: the notebook's reference answers pass, and wrong answers (the mistakes learners make)
fail with a message that says what to fix. 08.2 measures real servers, 08.3 and 08.4 a real loop's lag, so these
tests do too."""

import pytest

from gatewaylab.grading import run_check
from solution_answers import SolutionNotebook, failure_messages, nothing_left_running

NOTEBOOK = SolutionNotebook("08_concurrency_showdown.ipynb")
reference, variant = NOTEBOOK.reference, NOTEBOOK.variant

pytestmark = [
    pytest.mark.xdist_group("l08-checks"),  # timing checks: not beside each other on the same cores
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


def wrong(source: str, name: str):
    """A wrong answer written out in full, defined after the setup cell."""
    return NOTEBOOK.define(source, name)


@pytest.fixture(autouse=True)
def _nothing_left_running():
    with nothing_left_running("check-08"):
        yield


# --- 08.1 percentile ------------------------------------------------------------------------------------------------

def test_the_reference_percentile_passes():
    assert run_check("08.1", reference("percentile")).passed


def test_interpolation_is_named_as_such():
    answer = variant("percentile", ("rank = max(1, math.ceil(p * len(ordered) / 100))  # ranks count from 1; p = 0 "
                                    "is rank 1\n    return ordered[rank - 1]",
                                    "rank = (len(ordered) - 1) * p / 100\n    low = math.floor(rank)\n"
                                    "    high = min(low + 1, len(ordered) - 1)\n"
                                    "    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)"))
    assert "interpolation" in failure_messages(run_check("08.1", answer))


def test_a_floor_index_is_off_by_one():
    answer = variant("percentile", ("ordered[rank - 1]", "ordered[min(int(p * len(ordered) / 100), len(ordered) - 1)]"))
    assert "rank" in failure_messages(run_check("08.1", answer))


def test_p0_giving_the_largest_value_fails():
    answer = variant("percentile", ("rank = max(1, math.ceil(", "rank = (math.ceil("))
    assert "rank 1" in failure_messages(run_check("08.1", answer))


def test_sorting_the_callers_list_in_place_fails():
    answer = variant("percentile", ("ordered = sorted(values)", "values.sort()\n    ordered = values"))
    assert "values.sort()" in failure_messages(run_check("08.1", answer))


def test_not_sorting_fails():
    answer = variant("percentile", ("ordered = sorted(values)", "ordered = list(values)"))
    assert "sort" in failure_messages(run_check("08.1", answer))


@pytest.mark.parametrize("rank", ["math.ceil(p / 100 * len(ordered))", "math.ceil(p * 0.01 * len(ordered))"])
def test_a_rank_computed_in_floating_point_fails(rank):
    # 7 / 100 * 100 is 7.000000000000001: its ceil makes p7 of 1..100 the 8th value
    answer = variant("percentile", ("math.ceil(p * len(ordered) / 100)", rank))
    messages = failure_messages(run_check("08.1", answer))
    assert "floating point" in messages and "p * len(ordered) / 100" in messages


def test_a_wrong_rank_on_unsorted_input_is_not_blamed_on_sorting():
    answer = variant("percentile", ("math.ceil(p * len(ordered) / 100)", "round(p * len(ordered) / 100)"))
    messages = failure_messages(run_check("08.1", answer))
    assert "should sort" not in messages and "the sorting is not the trouble" in messages


def test_no_value_error_for_an_empty_list_fails():
    answer = variant("percentile", ('    if not ordered:\n        raise ValueError("no values: there is no '
                                    'percentile of nothing")\n', ""))
    assert "IndexError" in failure_messages(run_check("08.1", answer))


# --- 08.2 measure_servers -------------------------------------------------------------------------------------------

def test_the_reference_measurement_passes():
    report = run_check("08.2", reference("measure_servers"))
    assert report.passed, str(report)


def test_clients_one_after_another_lose_the_ordering():
    answer = variant("measure_servers", ("result = load(url, clients)  # all the clients at once",
                                         "result = load(url, 1, requests=clients)"))
    assert "at once" in failure_messages(run_check("08.2", answer))


def test_throughput_as_one_over_the_mean_latency_fails():
    answer = variant("measure_servers", ('"rps": result.throughput',
                                         '"rps": len(result.latencies) / sum(result.latencies)'))
    assert "rps is far from the check's" in failure_messages(run_check("08.2", answer))


def test_milliseconds_are_told_to_be_seconds():
    answer = variant("measure_servers", ('"p50_s": result.percentile(50), "p99_s": result.percentile(99)',
                                         '"p50_s": result.percentile(50) * 1000, "p99_s": result.percentile(99) * 1000'))
    assert "milliseconds" in failure_messages(run_check("08.2", answer))


def test_swapped_percentiles_fail():
    answer = variant("measure_servers", ('"p50_s": result.percentile(50), "p99_s": result.percentile(99)',
                                         '"p50_s": result.percentile(99), "p99_s": result.percentile(50)'))
    assert "swapped" in failure_messages(run_check("08.2", answer))


def test_the_mean_in_place_of_the_median_fails():
    answer = variant("measure_servers", ('"p50_s": result.percentile(50)',
                                         '"p50_s": sum(result.latencies) / len(result.latencies)'))
    assert "not the mean" in failure_messages(run_check("08.2", answer))


def test_the_maximum_in_place_of_p99_fails():
    answer = variant("measure_servers", ('"p99_s": result.percentile(99)', '"p99_s": max(result.latencies)'))
    assert "p100" in failure_messages(run_check("08.2", answer))


def test_rows_without_a_key_fail():
    answer = variant("measure_servers", ('"clients": clients, ', ""))
    assert "lacks clients" in failure_messages(run_check("08.2", answer))


# --- 08.3 run_in_pool -----------------------------------------------------------------------------------------------

def test_the_reference_pool_call_passes():
    assert run_check("08.3", reference("run_in_pool")).passed


def test_calling_func_on_the_loop_fails():
    answer = variant("run_in_pool", ("return await loop.run_in_executor(pool, func, *args)", "return func(*args)"))
    assert "this very process" in failure_messages(run_check("08.3", answer))


def test_to_thread_ignores_the_pool_and_the_gil_stalls_the_loop():
    answer = variant("run_in_pool", ("return await loop.run_in_executor(pool, func, *args)",
                                     "return await asyncio.to_thread(func, *args)"))
    messages = failure_messages(run_check("08.3", answer))
    assert "this very process" in messages and "woke" in messages


def test_waiting_for_the_future_in_the_loops_thread_stalls_it():
    answer = variant("run_in_pool", ("return await loop.run_in_executor(pool, func, *args)",
                                     "return pool.submit(func, *args).result()"))
    messages = failure_messages(run_check("08.3", answer))
    assert "woke" in messages and ".result()" in messages


def test_polling_the_future_with_time_sleep_stalls_the_loop():
    answer = wrong("""
async def run_in_pool(pool, func, *args):
    future = pool.submit(func, *args)
    while not future.done():
        time.sleep(0.01)
    return future.result()
""", "run_in_pool")
    assert "woke" in failure_messages(run_check("08.3", answer))


def test_swallowing_the_exception_fails():
    answer = variant("run_in_pool", ("return await loop.run_in_executor(pool, func, *args)",
                                     "try:\n        return await loop.run_in_executor(pool, func, *args)\n"
                                     "    except Exception:\n        return None"))
    assert "let the exception through" in failure_messages(run_check("08.3", answer))


def test_a_missing_await_is_named():
    answer = variant("run_in_pool", ("return await loop.run_in_executor", "return loop.run_in_executor"))
    assert "await is missing" in failure_messages(run_check("08.3", answer))


# --- 08.4 add_note --------------------------------------------------------------------------------------------------

BLOCKING = '''
async def add_note(db_path, upstream_url, text):
    reply = httpx.get(f"{upstream_url}/tag", params={"text": text})
    tag = reply.json()["tag"]
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db, db:
        note_id = db.execute("INSERT INTO notes (text, tag) VALUES (?, ?)", (text, tag)).lastrowid
    return {"id": note_id, "text": text, "tag": tag}
'''


def test_the_reference_notes_fix_passes():
    report = run_check("08.4", reference("add_note"))
    assert report.passed, str(report)


def test_the_blocking_version_fails_on_the_upstream_and_on_the_lock():
    report = run_check("08.4", wrong(BLOCKING, "add_note"))
    messages = failure_messages(report)
    assert "httpx.AsyncClient" in messages
    assert report.results[0].passed  # it is correct, only blocking
    assert "one after another, never two at once" in report.results[2].message  # what stalled: the upstream calls


def test_async_http_with_sqlite_on_the_loop_fails_on_the_lock():
    answer = variant("add_note", ("return {\"id\": await asyncio.to_thread(insert, tag),",
                                  "return {\"id\": insert(tag),"))
    report = run_check("08.4", answer)
    assert "sqlite3 waited for the write lock" in failure_messages(report)
    assert [r.passed for r in report.results] == [True, True, False]


def test_sqlite_in_a_thread_with_a_blocking_http_call_fails():
    answer = variant("add_note", ("    async with httpx.AsyncClient(timeout=10) as client:\n"
                                  "        reply = await client.get(f\"{upstream_url}/tag\", params={\"text\": text})\n",
                                  "    with httpx.Client(timeout=10) as client:\n"
                                  "        reply = client.get(f\"{upstream_url}/tag\", params={\"text\": text})\n"))
    assert "httpx.AsyncClient" in failure_messages(run_check("08.4", answer))


def test_a_note_never_committed_fails():
    answer = variant("add_note", ("with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db, db:",
                                  "with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:"))
    assert "commit" in failure_messages(run_check("08.4", answer))


def test_string_formatted_sql_fails_on_quotes():
    answer = variant("add_note", ('db.execute("INSERT INTO notes (text, tag) VALUES (?, ?)", (text, tag))',
                                  "db.execute(f\"INSERT INTO notes (text, tag) VALUES ('{text}', '{tag}')\")"))
    report = run_check("08.4", answer)
    assert not report.passed and not report.results[0].passed


NO_UPSTREAM = '''
async def add_note(db_path, upstream_url, text):   # never asks the upstream: the tag guessed from the text
    words = text.split()
    tag = words[0].lower() if words else "empty"
    def insert():
        with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db, db:
            return db.execute("INSERT INTO notes (text, tag) VALUES (?, ?)", (text, tag)).lastrowid
    note_id = await asyncio.to_thread(insert)
    return {"id": note_id, "text": text, "tag": tag}
'''


def test_a_tag_made_up_without_asking_the_upstream_fails():
    report = run_check("08.4", wrong(NO_UPSTREAM, "add_note"))
    messages = failure_messages(report)
    assert "never asked the upstream" in messages and "asked the upstream 0 time(s)" in messages
    assert not report.results[0].passed and not report.results[1].passed


KEPT_OPEN = '''
kept = []

async def add_note(db_path, upstream_url, text):   # every call leaves a connection open
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.get(f"{upstream_url}/tag", params={"text": text})
    tag = reply.json()["tag"]
    def insert():
        db = sqlite3.connect(db_path, timeout=5, check_same_thread=False)
        kept.append(db)
        note_id = db.execute("INSERT INTO notes (text, tag) VALUES (?, ?)", (text, tag)).lastrowid
        db.commit()
        return note_id
    return {"id": await asyncio.to_thread(insert), "text": text, "tag": tag}
'''


def test_a_connection_left_open_fails():
    answer = wrong(KEPT_OPEN, "add_note")
    try:
        report = run_check("08.4", answer)
    finally:
        for db in answer.__globals__["kept"]:
            db.close()
    assert "still open" in failure_messages(report) and not report.results[0].passed


BLOCKING_HTTP_WITH_AIOSQLITE = '''
import aiosqlite

async def add_note(db_path, upstream_url, text):
    reply = httpx.get(f"{upstream_url}/tag", params={"text": text})
    tag = reply.json()["tag"]
    async with aiosqlite.connect(db_path, timeout=5) as db:
        cursor = await db.execute("INSERT INTO notes (text, tag) VALUES (?, ?)", (text, tag))
        await db.commit()
    return {"id": cursor.lastrowid, "text": text, "tag": tag}
'''


def test_blocking_http_with_aiosqlite_is_told_the_upstream_calls_stalled():
    report = run_check("08.4", wrong(BLOCKING_HTTP_WITH_AIOSQLITE, "add_note"))
    messages = failure_messages(report)
    assert report.results[0].passed and not report.results[2].passed
    assert "the upstream calls waited in the loop's own thread" in report.results[2].message
    assert "sqlite3 waited" not in messages
