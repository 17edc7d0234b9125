"""A local server that speaks the Hugging Face Hub HTTP protocol, for tests.

It answers the routes the unmodified `huggingface_hub` and `datasets` clients use to create a
dataset repo, pre-upload and commit files (NDJSON commit, LFS batch + basic PUT), tag and branch
revisions, list trees and refs, and download files (`resolve`, with HTTP ranges). State lives in
memory and is git-like: immutable commits (a full file map each), branches and tags pointing at
commits, and a content-addressed store of LFS objects and regular blobs.

Tests point the clients at it with `HF_ENDPOINT=server.url` and drive it with:

- `server.inject(route, status, nth=..., times=...)`: fault injection, e.g. "the 2nd LFS upload
  answers 500, and so does every later one" (`inject("lfs_upload", 500, nth=2, times=None)`);
- `server.inject_tag_race(repo_id, tag, at=...)`: "another writer creates the tag first": the
  next request to create `tag` finds it already made, at the parent of the commit it names
  (`at="parent"`), at that very commit (`"commit"`: a concurrent run of the same publish), or at
  another commit with the same files (`"copy"`); it answers 409 as the Hub does;
- `server.requests`: every request seen, to assert what a client did (or did not) do;
- `server.state.tree_page_size`: entries per page of a tree listing (the Hub's 1,000 by
  default): a listing longer than that is paginated as the Hub does (`Link: <...>; rel="next"`
  with an opaque `cursor`, refused with 400 when it is not one this listing gave);
- `server.commits(repo_id)`, `server.refs(repo_id)`: the repo's history, without the clients.

Like the Hub, `/api/validate-yaml` and a commit that adds `README.md` refuse card metadata with a
licence, task category, size category, multilinguality or language code the Hub does not know
(400; lists in tests/hub_vocabulary.py, kept apart from the project's own).

Use it as a context manager, or through the `hub_server` / `hub` pytest fixtures of
`conftest_hub.py` (which fixes `HF_ENDPOINT` before the clients are imported).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

from hub_vocabulary import metadata_errors

DEFAULT_BRANCH = "main"
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".gz", ".zip")
WRITE_ROUTES = {"create_repo", "preupload", "commit", "tag", "branch", "lfs_batch", "lfs_upload"}
# LFS uploads go to presigned URLs (as the Hub's S3 ones): no Authorization header, a signature.
PRESIGNED_ROUTES = {"lfs_upload"}


class HubError(Exception):
    """An HTTP error answer: status, message, and the `X-Error-Code` the clients map to exceptions."""

    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: its git blob id, size, and the LFS sha256 when stored in LFS."""

    size: int
    git_oid: str
    lfs_oid: str | None = None

    @property
    def blob_key(self) -> str:
        return self.lfs_oid or self.git_oid


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    files: dict[str, StoredFile]
    date: float


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)  # git oid or LFS sha256 -> content


@dataclass
class Fault:
    """Answer `status` to the `nth` request of `route` and to the `times - 1` after it (None: forever)."""

    route: str
    status: int
    nth: int = 1
    times: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def fires(self) -> bool:
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    route: str
    status: int
    authorized: bool
    query: str = ""  # the raw query string (a listing's `cursor`, `recursive`...)


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as `oid` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubState:
    """All repos, the fault plan and the request log, behind one lock (the server is threaded)."""

    def __init__(self, token: str | None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.tag_races: dict[tuple[str, str], str] = {}  # (repo id, tag) -> where the other writer puts it
        self.requests: list[RequestRecord] = []
        # Entries per page of a tree listing: the Hub's 1,000 (its expanded listing: 50); tests
        # set a few, so a listing of several files takes several pages.
        self.tree_page_size = 1000
        self.lock = threading.RLock()
        self._counter = 0
        self._signing_key = hashlib.sha256(f"{id(self)}{time.time()}".encode()).digest()

    def sign(self, *parts: str) -> str:
        """Signature of a presigned URL."""
        return hmac.new(self._signing_key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()

    # -- repos and commits ------------------------------------------------------------------

    def repo(self, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        if repo_id in self.repos:
            raise HubError(409, "You already created this dataset repo")
        repo = Repo(repo_id, private=private)
        self.repos[repo_id] = repo
        self.commit(repo, DEFAULT_BRANCH, "initial commit", "", {".gitattributes": GITATTRIBUTES}, {}, [])
        return repo

    def resolve(self, repo: Repo, revision: str) -> Commit:
        revision = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and re.fullmatch(r"[0-9a-f]{40}", revision):
            oid = revision if revision in repo.commits else None
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def commit(
        self,
        repo: Repo,
        branch: str,
        title: str,
        message: str,
        regular: dict[str, bytes],
        lfs: dict[str, tuple[str, int]],
        deleted: list[str],
        parent_commit: str | None = None,
    ) -> Commit:
        head_oid = repo.branches.get(branch)
        if head_oid is None and repo.commits:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        if parent_commit and parent_commit != head_oid:
            raise HubError(412, f"A commit has happened since. Please refresh and try again. (parent {parent_commit} is not the head of {branch})")
        files = dict(repo.commits[head_oid].files) if head_oid else {}
        for path in deleted:
            removed = [p for p in files if p == path or p.startswith(path.rstrip("/") + "/")]
            if not removed:
                raise HubError(404, f"{path} does not exist in {branch}", "EntryNotFound")
            for p in removed:
                del files[p]
        for path, content in regular.items():
            oid = git_blob_oid(content)
            repo.blobs[oid] = content
            files[path] = StoredFile(len(content), oid)
        for path, (sha256, size) in lfs.items():
            if sha256 not in repo.blobs:
                raise HubError(400, f"LFS object {sha256} for {path} was never uploaded")
            files[path] = StoredFile(size, git_blob_oid(_lfs_pointer(sha256, size)), sha256)
        self._counter += 1
        oid = hashlib.sha1(f"{repo.repo_id}\0{head_oid}\0{title}\0{self._counter}\0{time.time()}".encode()).hexdigest()
        commit = Commit(oid, head_oid, title, message, files, time.time())
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    def other_writers_tag(self, repo: Repo, tag: str, named: Commit) -> None:
        """Another writer's tag, made just before a client asks for `tag` at `named` (inject_tag_race)."""
        at = self.tag_races.pop((repo.repo_id, tag), None)
        if at == "parent":
            repo.tags[tag] = named.parent or named.oid
        elif at == "commit":
            repo.tags[tag] = named.oid
        elif at == "copy":  # their own commit of the same files, on no branch
            self._counter += 1
            copy = dataclasses.replace(named, oid=hashlib.sha1(f"copy\0{named.oid}\0{self._counter}".encode()).hexdigest(), parent=named.oid, title="other writer")
            repo.commits[copy.oid] = copy
            repo.tags[tag] = copy.oid

    def take_fault(self, route: str) -> Fault | None:
        for fault in self.faults:
            if fault.route == route and fault.fires():
                return fault
        return None


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to a `_route_*` method; errors become Hub-shaped JSON answers."""

    server: "_Server"
    protocol_version = "HTTP/1.1"

    # (method, regex over the raw path, route name)
    ROUTES: list[tuple[str, re.Pattern[str], str]] = [
        (m, re.compile(p), name)
        for m, p, name in [
            ("GET", r"^/api/agent-harnesses$", "agent_harnesses"),
            ("GET", r"^/api/whoami-v2$", "whoami"),
            ("POST", r"^/api/validate-yaml$", "validate_yaml"),
            ("POST", r"^/api/repos/create$", "create_repo"),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?$", "repo_info"),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)$", "preupload"),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)$", "commit"),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)$", "paths_info"),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/tag/(?P<rev>[^/]+)$", "tag"),
            ("POST", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/branch/(?P<branch>[^/]+)$", "branch"),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/refs$", "refs"),
            ("GET", r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/commits/(?P<rev>[^/]+)$", "commits"),
            ("POST", r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", "lfs_batch"),
            ("PUT", r"^/lfs-upload/(?P<repo>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})$", "lfs_upload"),
            ("HEAD", r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
            ("GET", r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
        ]
    ]

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests assert on `server.requests`, and request lines would carry no secret anyway."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def state(self) -> HubState:
        return self.server.state

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route, params = self._match(method, split.path)
        authorized = self._authorized()
        status = 500
        try:
            with self.state.lock:
                fault = self.state.take_fault(route) if route else None
            if fault is not None:
                status = fault.status
                self._send_json(fault.status, {"error": f"injected fault on {route}"}, headers=fault.headers)
                return
            if route is None:
                raise HubError(404, f"no route for {method} {split.path}")
            if route in WRITE_ROUTES - PRESIGNED_ROUTES and not authorized:
                raise HubError(401, "Invalid credentials in Authorization header")
            with self.state.lock:
                status = getattr(self, f"_route_{route}")(authorized=authorized, **params)
        except HubError as e:
            status = e.status
            self._send_json(e.status, {"error": e.message}, headers={"X-Error-Code": e.error_code} if e.error_code else {})
        finally:
            with self.state.lock:
                self.state.requests.append(RequestRecord(method, split.path, route or "", status, authorized, split.query))

    def _match(self, method: str, path: str) -> tuple[str | None, dict[str, str]]:
        for route_method, pattern, name in self.ROUTES:
            match = pattern.match(path)
            if route_method == method and match:
                return name, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        return None, {}

    def _authorized(self) -> bool:
        token = self.state.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as e:
            raise HubError(400, f"invalid JSON body: {e}") from e

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> int:
        return self._send(status, json.dumps(payload).encode(), "application/json", headers)

    @property
    def _base_url(self) -> str:
        return self.server.url

    # -- routes -----------------------------------------------------------------------------

    def _route_agent_harnesses(self, authorized: bool) -> int:
        return self._send_json(200, {"standardEnvVars": [], "harnesses": {}})

    def _route_whoami(self, authorized: bool) -> int:
        if not authorized or self.state.token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self._send_json(200, {"type": "user", "name": "tester", "orgs": [], "auth": {"accessToken": {"role": "write"}}})

    def _route_validate_yaml(self, authorized: bool) -> int:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as e:
            return self._send_json(400, {"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []})
        if metadata is not None and not isinstance(metadata, dict):
            return self._send_json(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        errors = metadata_errors(content)
        if errors:
            return self._send_json(400, {"errors": [{"message": e} for e in errors], "warnings": []})
        return self._send_json(200, {"errors": [], "warnings": []})

    def _route_create_repo(self, authorized: bool) -> int:
        body = self._json_body()
        if body.get("type") != "dataset":
            raise HubError(400, "this test server hosts dataset repos only")
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        # huggingface_hub >= 1.x sends `visibility`; older clients `private`
        private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
        url = f"{self._base_url}/datasets/{repo_id}"
        if repo_id in self.state.repos:  # the Hub's 409 names the existing repo: exist_ok clients read its url
            return self._send_json(409, {"error": "You already created this dataset repo", "url": url})
        self.state.create_repo(repo_id, private)
        return self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _route_repo_info(self, authorized: bool, repo: str, rev: str = DEFAULT_BRANCH) -> int:
        stored = self.state.repo(repo, authorized)
        commit = self.state.resolve(stored, rev)
        card = stored.blobs.get(commit.files["README.md"].git_oid) if "README.md" in commit.files else None
        match = re.match(rb"^---\n(.*?)\n---", card or b"", re.S)
        return self._send_json(
            200,
            {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "private": stored.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": _iso(commit.date),
                "createdAt": _iso(stored.commits[next(iter(stored.commits))].date),
                "cardData": yaml.safe_load(match.group(1)) if match else None,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            },
        )

    def _route_preupload(self, authorized: bool, repo: str, rev: str) -> int:
        stored = self.state.repo(repo, authorized)
        commit = self.state.resolve(stored, rev)
        answer = []
        for file in self._json_body().get("files", []):
            path = file["path"]
            existing = commit.files.get(path)
            answer.append(
                {
                    "path": path,
                    # As the Hub does for LFS-tracked patterns; `datasets` relies on parquet going LFS.
                    "uploadMode": "lfs" if path.endswith(LFS_SUFFIXES) else "regular",
                    "shouldIgnore": False,
                    "oid": existing.git_oid if existing else None,
                }
            )
        return self._send_json(200, {"files": answer, "commitOid": commit.oid})

    def _route_commit(self, authorized: bool, repo: str, rev: str) -> int:
        stored = self.state.repo(repo, authorized)
        header: dict[str, Any] = {}
        regular: dict[str, bytes] = {}
        lfs: dict[str, tuple[str, int]] = {}
        deleted: list[str] = []
        for line in self.body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                regular[value["path"]] = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
            elif key == "lfsFile":
                lfs[value["path"]] = (value["oid"], int(value["size"]))
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        if "README.md" in regular:  # the Hub refuses a commit whose card metadata it does not accept
            errors = metadata_errors(regular["README.md"].decode("utf-8", errors="replace"))
            if errors:
                raise HubError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))
        commit = self.state.commit(
            stored, rev, header.get("summary", ""), header.get("description", ""), regular, lfs, deleted, header.get("parentCommit")
        )
        return self._send_json(
            200,
            {"success": True, "commitOid": commit.oid, "commitUrl": f"{self._base_url}/datasets/{repo}/commit/{commit.oid}", "pullRequestUrl": None},
        )

    def _route_tree(self, authorized: bool, repo: str, rev: str, path: str = "") -> int:
        stored = self.state.repo(repo, authorized)
        commit = self.state.resolve(stored, rev)
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        expand = self.query.get("expand", "false").lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for file_path, stored_file in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix):].split("/")
            for depth in range(1, len(rest)):
                folder = prefix + "/".join(rest[:depth])
                entries.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder})
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                entries[file_path] = _file_entry(file_path, stored_file)
                if expand:  # the Hub's expanded entry: the last commit that touched the file
                    entries[file_path]["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": _iso(commit.date)}
        return self._send_page(list(entries.values()), self.state.tree_page_size // (20 if expand else 1) or 1, f"{repo}\0{commit.oid}\0{path}")

    def _send_page(self, items: list[dict[str, Any]], size: int, listing: str) -> int:
        """One page of a listing, as the Hub paginates: at most `size` items, and while more are
        left a `Link: <url>; rel="next"` header whose `cursor` is opaque, signed for this one
        listing (a cursor of another listing, or a made-up one, is a 400)."""
        start = 0
        if "cursor" in self.query:
            offset, _, signature = self.query["cursor"].partition(".")
            if not offset.isdigit() or not hmac.compare_digest(signature, self.state.sign("cursor", listing, offset)):
                raise HubError(400, "Invalid cursor")
            start = int(offset)
        page, end = items[start:start + size], start + size
        headers = {}
        if end < len(items):
            query = {k: v for k, v in self.query.items() if k != "cursor"}
            query["cursor"] = f"{end}.{self.state.sign('cursor', listing, str(end))}"
            headers["Link"] = f'<{self._base_url}{urlsplit(self.path).path}?{urlencode(query)}>; rel="next"'
        return self._send_json(200, page, headers=headers)

    def _route_paths_info(self, authorized: bool, repo: str, rev: str) -> int:
        stored = self.state.repo(repo, authorized)
        commit = self.state.resolve(stored, rev)
        form = parse_qs(self.body.decode())
        paths = form.get("paths", [])
        answer: list[dict[str, Any]] = []
        for path in paths:
            if path in commit.files:
                answer.append(_file_entry(path, commit.files[path]))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                answer.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path})
        return self._send_json(200, answer)

    def _route_tag(self, authorized: bool, repo: str, rev: str) -> int:
        stored = self.state.repo(repo, authorized)
        commit = self.state.resolve(stored, rev)
        tag = self._json_body()["tag"]
        self.state.other_writers_tag(stored, tag, commit)
        if tag in stored.tags:
            raise HubError(409, f"Tag {tag} already exists")
        stored.tags[tag] = commit.oid
        return self._send_json(200, {"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.oid})

    def _route_branch(self, authorized: bool, repo: str, branch: str) -> int:
        stored = self.state.repo(repo, authorized)
        start = self._json_body().get("startingPoint") or DEFAULT_BRANCH
        if branch in stored.branches:
            raise HubError(409, f"Branch {branch} already exists")
        stored.branches[branch] = self.state.resolve(stored, start).oid
        return self._send_json(200, {"name": branch})

    def _route_refs(self, authorized: bool, repo: str) -> int:
        stored = self.state.repo(repo, authorized)

        def refs(kind: str, names: dict[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())]

        return self._send_json(200, {"branches": refs("heads", stored.branches), "tags": refs("tags", stored.tags), "converts": []})

    def _route_commits(self, authorized: bool, repo: str, rev: str) -> int:
        stored = self.state.repo(repo, authorized)
        commit: Commit | None = self.state.resolve(stored, rev)
        history = []
        while commit is not None:
            history.append({"id": commit.oid, "title": commit.title, "message": commit.message, "authors": [{"user": "tester"}], "date": _iso(commit.date)})
            commit = stored.commits.get(commit.parent) if commit.parent else None
        return self._send_json(200, history)

    def _route_lfs_batch(self, authorized: bool, repo: str) -> int:
        stored = self.state.repo(repo, authorized)
        objects = []
        for obj in self._json_body().get("objects", []):
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in stored.blobs:  # already stored objects get no action: the client skips them
                signature = self.state.sign(repo, obj["oid"])
                answer["actions"] = {"upload": {"href": f"{self._base_url}/lfs-upload/{repo}/{obj['oid']}?sig={signature}", "header": {}}}
            objects.append(answer)
        return self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), "application/vnd.git-lfs+json")

    def _route_lfs_upload(self, authorized: bool, repo: str, oid: str) -> int:
        stored = self.state.repo(repo, authorized=True)
        if not hmac.compare_digest(self.query.get("sig", ""), self.state.sign(repo, oid)):
            raise HubError(403, "invalid or missing upload signature")
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not match sha256 {oid}")
        stored.blobs[oid] = self.body
        return self._send(200, b"", "text/plain")

    def _route_resolve(self, authorized: bool, repo: str, rev: str, path: str) -> int:
        stored = self.state.repo(repo, authorized)
        commit = self.state.resolve(stored, rev)
        stored_file = commit.files.get(path)
        if stored_file is None:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        content = stored.blobs[stored_file.blob_key]
        etag = f'"{stored_file.lfs_oid or stored_file.git_oid}"'
        headers = {"X-Repo-Commit": commit.oid, "ETag": etag, "Accept-Ranges": "bytes"}
        if stored_file.lfs_oid:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(stored_file.size)})
        status, content = _apply_range(self.headers.get("Range"), content, headers)
        return self._send(status, content, "application/octet-stream", headers)


def _file_entry(path: str, stored_file: StoredFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": stored_file.git_oid, "size": stored_file.size, "path": path}
    if stored_file.lfs_oid:
        entry["lfs"] = {"oid": stored_file.lfs_oid, "size": stored_file.size, "pointerSize": len(_lfs_pointer(stored_file.lfs_oid, stored_file.size))}
    return entry


def _apply_range(header: str | None, content: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not match:
        return 200, content
    start_text, end_text = match.groups()
    if start_text:
        start, end = int(start_text), int(end_text) if end_text else len(content) - 1
    else:  # suffix range: the last N bytes
        start, end = max(0, len(content) - int(end_text)), len(content) - 1
    end = min(end, len(content) - 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
    return 206, content[start:end + 1]


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    url: str


class HubServer:
    """The local Hub: `with HubServer(token=...) as hub:` then `HF_ENDPOINT=hub.url`."""

    def __init__(self, token: str | None = None, port: int = 0):
        self._server = _Server(("127.0.0.1", port), HubRequestHandler)
        self._server.state = HubState(token)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._server.url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> HubState:
        return self._server.state

    # -- test helpers -----------------------------------------------------------------------

    def inject(self, route: str, status: int, *, nth: int = 1, times: int | None = 1, headers: dict[str, str] | None = None) -> Fault:
        """Make the `nth` request to `route` (and `times - 1` more; None: all later) answer `status`."""
        fault = Fault(route, status, nth, times, dict(headers or {}))
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def inject_tag_race(self, repo_id: str, tag: str, *, at: str = "parent") -> None:
        """Another writer creates `tag` in `repo_id` just before the next request to create it
        (`at`: "parent", "commit" or "copy", see the module docstring); that request gets 409."""
        if at not in ("parent", "commit", "copy"):
            raise ValueError(f"at must be parent, commit or copy, not {at!r}")
        with self.state.lock:
            self.state.tag_races[(repo_id, tag)] = at

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.tag_races.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.requests)

    def writes_since(self, index: int) -> list[RequestRecord]:
        """Requests after `requests[index]` that could change state (any non-GET/HEAD besides read-only POSTs)."""
        return [r for r in self.requests[index:] if r.route in WRITE_ROUTES]

    def refs(self, repo_id: str) -> dict[str, dict[str, str]]:
        with self.state.lock:
            repo = self.state.repos[repo_id]
            return {"branches": dict(repo.branches), "tags": dict(repo.tags)}

    def commits(self, repo_id: str, branch: str = DEFAULT_BRANCH) -> list[Commit]:
        """History of `branch`, newest first (the repo's initial commit last)."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            history, oid = [], repo.branches[branch]
            while oid:
                history.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return history

    def rename_commit(self, repo_id: str, oid: str, new_oid: str) -> None:
        """Give commit `oid` the id `new_oid` (branches, tags and children follow): a test can
        hold a repo whose history has a known commit id, e.g. a pinned upstream revision."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            repo.commits[new_oid] = dataclasses.replace(repo.commits.pop(oid), oid=new_oid)
            for refs in (repo.branches, repo.tags):
                refs.update({name: new_oid for name, target in refs.items() if target == oid})
            for key, child in list(repo.commits.items()):
                if child.parent == oid:
                    repo.commits[key] = dataclasses.replace(child, parent=new_oid)

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> dict[str, bytes]:
        """Path -> content of every file at `revision`."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            commit = self.state.resolve(repo, revision)
            return {path: repo.blobs[f.blob_key] for path, f in commit.files.items()}

    def all_stored_bytes(self) -> bytes:
        """Every stored blob and commit message, concatenated: to scan for leaked secrets."""
        with self.state.lock:
            parts = [blob for repo in self.state.repos.values() for blob in repo.blobs.values()]
            parts += [f"{c.title}\n{c.message}".encode() for repo in self.state.repos.values() for c in repo.commits.values()]
            return b"\n".join(parts)

