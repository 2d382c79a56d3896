"""The peer of `bench_send operating-point`: a paced Cloud API sender in Python, with a
durable journal, to compare CPU per message with wacampaign's engine.

asyncio + aiohttp (one ClientSession, a connector limit sized by the caller), a pacer
on a timeline at --rate, and a SQLite journal in WAL with synchronous=FULL: a row per
recipient, its intent committed before its request and its outcome after. Like the
engine, rows are claimed as slots free up, ahead of their tickets, by one writer
thread, and the outcomes received meanwhile ride in the claim's transaction.
Prints one JSON object; only the send phase is in `seconds` and `cpu_seconds`.
"""
import argparse, asyncio, concurrent.futures, csv, functools, json, os, resource, sqlite3, time
import aiohttp

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def main(a):
    rows = [(i, r["to"], r["name"], r["date"]) for i, r in enumerate(csv.DictReader(open(a.recipients)), 1)]
    db = sqlite3.connect(a.journal, isolation_level=None, check_same_thread=False)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, phone TEXT UNIQUE NOT NULL, state TEXT NOT NULL,"
               " message_id TEXT, error TEXT, intent_at REAL, outcome_at REAL)")
    with db:
        db.executemany("INSERT INTO journal (seq, phone, state) VALUES (?, ?, 'planned')", [r[:2] for r in rows])
    # One thread owns the connection, so an fsync never stalls the event loop (and the pacer).
    writer = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    def commit(outcomes, claimed, unclaimed=()):  # one transaction: outcomes, then new intents
        db.execute("BEGIN")
        db.executemany("UPDATE journal SET state = ?, message_id = ?, error = ?, outcome_at = ? WHERE seq = ?", outcomes)
        db.executemany("UPDATE journal SET state = 'in_flight', intent_at = ? WHERE seq = ?",
                       [(time.time(), r[0]) for r in claimed])
        db.executemany("UPDATE journal SET state = 'planned' WHERE seq = ?", [r[:1] for r in unclaimed])
        db.execute("COMMIT")

    outcomes, free, freed, ready, stop = [], [a.limit], asyncio.Event(), asyncio.Queue(), asyncio.Event()

    async def claimer():  # as the engine's dispatcher: claim as many rows as there are free slots
        i = 0
        while i < len(rows):
            while free[0] == 0 and not stop.is_set():
                freed.clear()
                await freed.wait()
            if stop.is_set():  # return, not cancel: a cancelled commit would never run
                return
            k = min(free[0], len(rows) - i)
            free[0] -= k
            batch, done = rows[i:i + k], outcomes[:]
            outcomes.clear()
            i += k
            await loop.run_in_executor(writer, commit, done, batch)
            for r in batch:
                ready.put_nowait(r)

    async def send(session, seq, to, name, date):
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
                "template": {"name": a.template, "language": {"policy": "deterministic", "code": a.language},
                             "components": [{"type": "body", "parameters": [{"type": "text", "text": name},
                                                                           {"type": "text", "text": date}]}]},
                "biz_opaque_callback_data": f"wacampaign:{a.campaign_id}:{to.lstrip('+')}"}
        try:
            async with session.post(a.url, json=body) as response:
                answer = await response.json(content_type=None)
                if response.status == 200:
                    outcomes.append(("accepted", answer["messages"][0]["id"], None, time.time(), seq))
                else:
                    outcomes.append(("failed", None, f"HTTP {response.status}", time.time(), seq))
        except Exception as e:  # no answer: it may have gone out
            outcomes.append(("in_doubt", None, repr(e), time.time(), seq))
        finally:
            free[0] += 1
            freed.set()

    # As the engine's pacer: any rate + 1 tickets span over a second, and at most 2 ms
    # of lateness is made up, so no one-second window holds more than `rate`.
    period, slack, tasks, sent = 1.006 / a.rate, 0.002, set(), 0
    headers = {"Authorization": f"Bearer {os.environ[a.token_env]}"}
    compact = functools.partial(json.dumps, separators=(",", ":"))  # the bytes the engine sends
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=a.limit), headers=headers,
                                     json_serialize=compact) as session:
        cpu0, t0 = cpu(), loop.time()
        claiming, next_at = asyncio.create_task(claimer()), t0
        while sent < len(rows) and loop.time() - t0 < a.seconds:
            r = await ready.get()
            now = loop.time()
            next_at = max(next_at, now - slack)
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += period
            task = asyncio.create_task(send(session, *r))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        stop.set()
        freed.set()
        await claiming
        while tasks:
            await asyncio.gather(*list(tasks))
        unclaimed = []
        while not ready.empty():
            unclaimed.append(ready.get_nowait())
        await loop.run_in_executor(writer, commit, outcomes, [], unclaimed)
        seconds, cpu_seconds = loop.time() - t0, cpu() - cpu0
    counts = dict(db.execute("SELECT state, count(*) FROM journal GROUP BY state").fetchall())
    accepted = counts.get("accepted", 0)
    print(json.dumps({"messages": accepted, "requests": sent, "journal": counts, "seconds": round(seconds, 3),
                      "rate": round(accepted / seconds, 1), "cpu_seconds": round(cpu_seconds, 3),
                      "us_per_message": round(cpu_seconds * 1e6 / max(accepted, 1), 1), "limit": a.limit}))

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="POST target: {base}/v23.0/{phone_number_id}/messages")
    p.add_argument("--token-env", default="WHATSAPP_TOKEN", help="the environment variable with the token")
    p.add_argument("--recipients", required=True, help="CSV with columns to,name,date (to in E.164)")
    p.add_argument("--journal", required=True, help="SQLite file to create")
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--limit", type=int, default=100, help="connections (requests in flight)")
    p.add_argument("--seconds", type=float, default=20, help="stop starting requests after this long")
    p.add_argument("--template", default="appointment_reminder")
    p.add_argument("--language", default="es_MX")
    p.add_argument("--campaign-id", default="bench-send")
    asyncio.run(main(p.parse_args()))
