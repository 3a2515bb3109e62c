"""Gradio's file route serves what the UI shows and nothing else (issue 13, item 1)."""

from urllib.parse import quote

from fastapi.testclient import TestClient

from app.main import UI_PATH, create_app


def test_the_ui_file_route_serves_artefacts_but_not_the_database_uploads_or_policies(tiny_bundle, tmp_path):
    runs = tmp_path / "runs"
    app = create_app(tiny_bundle, db=runs / "jobs.sqlite", runs=runs, eval_episodes=0)
    private = [runs / "jobs.sqlite", runs / "uploads" / "abc.mp4", runs / "policies" / "walker" / "p" / "policy.pt"]
    shown = runs / "jobs" / "0123" / "target.mp4"
    with TestClient(app) as client:
        for path in private[1:] + [shown]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"secret bytes of " + path.name.encode())
        (runs / "jobs.sqlite-wal").write_bytes(b"wal")
        private.append(runs / "jobs.sqlite-wal")

        def fetch(path):
            return client.get(f"{UI_PATH}/gradio_api/file={quote(str(path.resolve()))}")

        ok = fetch(shown)
        assert ok.status_code == 200 and ok.content.startswith(b"secret bytes of target.mp4")  # the route works
        for path in private:
            assert path.exists()
            res = fetch(path)
            assert res.status_code in (403, 404), (path, res.status_code)
            assert b"SQLite format" not in res.content and b"secret bytes" not in res.content
