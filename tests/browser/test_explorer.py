"""The pool explorer (``GET /explorer``) in a real headless Chromium against a real ``pie-retriever serve``: the playground's
PIE and BM25 columns, a map tooltip, relabel with a write key (kept across a restart), refusal with a read key, no
console errors; first paint and the playground round trip measured with the Performance API; screenshots of each view
to docs/img/explorer-*.png. Every wait is bounded."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from service_harness import READ_KEY, WRITE_KEY, Server

pytestmark = [pytest.mark.browser, pytest.mark.service]

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
WAIT = 20.0
N_QUERIES = 10


def wait_for(drv, condition, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.02).until(lambda d: condition(d), message=f"timed out waiting for {what}")


def open_page(drv, srv: Server, key: str) -> None:
    drv.get(f"{srv.url}/explorer")
    drv.execute_script("sessionStorage.clear()")
    field = drv.find_element("id", "key")
    field.clear()
    field.send_keys(key)
    drv.find_element("id", "key-save").click()
    wait_for(drv, lambda d: "demonstrations" in d.find_element("id", "status").text, "the index list")
    assert key not in drv.current_url


def console_errors(drv, allowed: tuple[str, ...] = ()) -> list[str]:
    entries = drv.get_log("browser")
    return [e["message"] for e in entries if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def column(drv, list_id: str) -> list[tuple[str, str]]:
    return [(li.get_attribute("data-id"), li.get_attribute("data-task")) for li in drv.find_elements("css selector", f"#{list_id} li")]


def search(drv, query: str) -> None:
    done = int(drv.execute_script("return window.pieTimings.roundTrips.length"))
    box = drv.find_element("id", "pg-query")
    box.clear()
    box.send_keys(query + "\n")  # Enter submits
    wait_for(drv, lambda d: int(d.execute_script("return window.pieTimings.roundTrips.length")) > done, f"both columns for {query!r}")


def shot(drv, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / f"explorer-{name}.png"
    drv.save_screenshot(str(path))
    assert path.stat().st_size < 300_000, f"{path} is {path.stat().st_size} bytes"


def test_playground_pie_vs_bm25_and_timings(driver, server):
    from pie_retriever.pool.pools import load_bundled_queries

    queries = load_bundled_queries()[:N_QUERIES]
    open_page(driver, server, READ_KEY)
    paint = driver.execute_script("return Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))")
    client = server.client(READ_KEY)
    on_task = {"pie": 0, "bm25": 0}
    for q in queries:
        search(driver, q.instruction)
        pie, bm25 = column(driver, "pie-hits"), column(driver, "bm25-hits")
        assert len(pie) == 4 and len(bm25) == 4
        api_bm25 = client.post("/v1/indexes/pool/bm25", json={"query": q.instruction, "k": 4}).json()["hits"]
        assert [i for i, _ in bm25] == [h["id"] for h in api_bm25]
        api_pie = client.post("/v1/indexes/pool/search", json={"query": q.instruction, "k": 4}).json()["hits"]
        assert [i for i, _ in pie] == [h["id"] for h in api_pie]
        on_task["pie"] += sum(t == q.metadata["task"] for _, t in pie)
        on_task["bm25"] += sum(t == q.metadata["task"] for _, t in bm25)
    wait_for(driver, lambda d: d.find_element("id", "prompt-text").text.strip() and d.find_elements("css selector", "#prompt-chat .msg"),
             "the few-shot prompts")
    assert queries[-1].instruction in driver.find_element("id", "prompt-text").text
    share = {name: n / (4 * len(queries)) for name, n in on_task.items()}
    # measured 0.70 for PIE (0.575 for BM25) over these 10 held-out queries; 0.6 leaves four hits of margin
    assert share["pie"] >= 0.6, f"only {share['pie']:.0%} of PIE's top-4 hits are of the query's task"
    trips = driver.execute_script("return window.pieTimings.roundTrips")
    p50 = statistics.median(trips)
    print(f"\nexplorer timings: first-paint {paint.get('first-paint', float('nan')):.0f} ms, first-contentful-paint "
          f"{paint.get('first-contentful-paint', float('nan')):.0f} ms, playground round trip p50 {p50:.1f} ms "
          f"(max {max(trips):.1f} ms, {len(trips)} queries); top-4 hits of the query's task: PIE {share['pie']:.0%}, BM25 {share['bm25']:.0%}")
    # the target is 1.5 s; measured 0.16-1.3 s on the shared 2-core machine, so the bound leaves room for load
    assert "first-contentful-paint" in paint and paint["first-contentful-paint"] < 3000
    assert p50 < 1000  # loose bound for a shared 2-core machine; the measured value is printed and documented
    shot(driver, "playground")
    assert console_errors(driver) == []


def test_map_tooltip(driver, server):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(driver, server, READ_KEY)
    t0 = time.monotonic()
    driver.find_element("css selector", ".tab[data-view=map]").click()
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-map-ready") == "1", "the map")
    points = driver.find_elements("css selector", "#map-plot .scatterlayer .trace path.point")
    ready_s = time.monotonic() - t0
    print(f"\nexplorer timings: map of {len(points)} points drawn in {ready_s * 1000:.0f} ms")
    assert len(points) == server.client(READ_KEY).get("/v1/indexes").json()["indexes"][0]["size"]
    m = server.client(READ_KEY).get("/v1/indexes/pool/map").json()
    assert len(m["groups"]) <= 20 and m["groups"][-1] == "other"
    ActionChains(driver).move_to_element(points[0]).perform()
    tip = wait_for(driver, lambda d: d.find_elements("css selector", "#map-plot .hoverlayer .hovertext"), "the tooltip")
    text = tip[0].text
    words = [w for w in text.replace("\n", " ").split() if len(w) > 3]
    assert any(sum(w in instr for w in words) >= min(3, len(words)) for instr in m["instructions"]), text
    shot(driver, "map")
    assert console_errors(driver) == []


def _relabel_in_page(driver, demo_id: str, task: str) -> str:
    driver.find_element("css selector", ".tab[data-view=edit]").click()
    wait_for(driver, lambda d: d.find_elements("css selector", "#ed-table tbody tr"), "the edit table")
    find = driver.find_element("id", "ed-find")
    find.clear()
    find.send_keys(demo_id)
    row = wait_for(driver, lambda d: [r for r in d.find_elements("css selector", "#ed-table tbody tr") if r.get_attribute("data-id") == demo_id],
                   f"the row of {demo_id}")[0]
    box = row.find_element("css selector", "input.new-task")
    box.clear()
    box.send_keys(task)
    before = driver.find_element("id", "ed-msg").text
    row.find_element("css selector", "button.relabel").click()
    return wait_for(driver, lambda d: (t := d.find_element("id", "ed-msg").text) != before and t, "the edit reply")


def test_edit_refused_with_a_read_key(driver, server):
    open_page(driver, server, READ_KEY)
    msg = _relabel_in_page(driver, "d-write-poem-03", "write|limerick")
    assert msg.startswith("Refused") and "read scope" in msg
    assert "error" in driver.find_element("id", "ed-msg").get_attribute("class")
    shot(driver, "edit-refused")
    hit = server.client(READ_KEY).post("/v1/indexes/pool/search", json={"query": "Can you write a limerick about a lazy cat?", "k": 1}).json()["hits"][0]
    assert hit["id"] == "d-write-poem-03" and hit["metadata"]["task"] == "write|poem"
    # the only console error is the refused request itself
    errors = driver.get_log("browser")
    severe = [e["message"] for e in errors if e["level"] == "SEVERE"]
    assert all("relabel" in m and "403" in m for m in severe), severe


def test_relabel_with_a_write_key_survives_a_restart(driver, index_copy):
    srv = Server([index_copy]).start()
    try:
        open_page(driver, srv, WRITE_KEY)
        msg = _relabel_in_page(driver, "d-write-poem-03", "write|limerick")
        assert "write|poem → write|limerick" in msg, msg
        cells = [r.find_element("css selector", "td.cur-task").text for r in driver.find_elements("css selector", "#ed-table tbody tr")
                 if r.get_attribute("data-id") == "d-write-poem-03"]
        assert cells == ["write|limerick"]  # the other views see it without a reload
        driver.find_element("id", "ed-find").clear()
        driver.find_element("id", "ed-find").send_keys("write|")
        shot(driver, "edit")
        assert console_errors(driver) == []
        srv.kill()  # kill -9: the relabel must already be on disk (fsync before the reply), not saved at shutdown
        srv = Server([index_copy]).start()
        demos = srv.client(READ_KEY).get("/v1/indexes/pool/map").json()
        tasks = dict(zip(demos["ids"], demos["tasks"]))
        assert tasks["d-write-poem-03"] == "write|limerick" and len(tasks) == 249
        open_page(driver, srv, READ_KEY)
        driver.find_element("css selector", ".tab[data-view=edit]").click()
        driver.find_element("id", "ed-find").send_keys("d-write-poem-03")
        wait_for(driver, lambda d: [r for r in d.find_elements("css selector", "#ed-table tbody tr td.cur-task") if r.text == "write|limerick"],
                 "the kept label after the restart")
        assert console_errors(driver) == []
    finally:
        srv.stop()
