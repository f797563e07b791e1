"""The whole API on PostgreSQL: a real server process whose metadata lives in a throwaway cluster."""

from __future__ import annotations

import psycopg

from conftest import running_server


def test_a_server_on_postgres_serves_execs_and_keeps_them_across_a_restart(pg_url: str) -> None:
    env = {"CLOCHE_DATABASE_URL": pg_url, "CLOCHE_NODE_NAME": "n1"}
    with running_server(env) as srv:
        with srv.client() as client:
            box = client.create("python", env={"GREETING": "hi"})
            box.write("main.py", "import os\nprint(os.environ['GREETING'], 6 * 7)\n")
            result = box.exec("main.py")
            assert (result.status, result.stdout) == ("succeeded", "hi 42\n")
            gone = client.create("python")
            gone.delete()
        srv.stop()
        srv.start()
        with srv.client() as client:
            again = client.sandbox(box.id)
            assert [(r.run_id, r.status) for r in again.runs().runs] == [(result.run_id, "succeeded")]
            assert again.run(result.run_id).stdout == "hi 42\n"
            assert again.read("main.py").startswith(b"import os")
            assert again.exec(command="echo again").stdout == "again\n"
            assert [s.id for s in client.list()] == [box.id]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id, placement, deleted_reason FROM sandboxes ORDER BY created_at").fetchall()
    assert rows == [(box.id, "n1", None), (gone.id, "n1", "deleted")]
