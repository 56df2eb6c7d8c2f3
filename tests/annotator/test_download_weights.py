"""``annotator download-weights``: registry, verified download into the cache, offline message.

Nothing here touches the real network: every registry URL is replaced by one on a local
``http.server`` (127.0.0.1, a thread), and ``urllib.request.urlopen`` is wrapped so that any
other host fails the test (and the registry's real URLs are asserted never to be opened).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import urllib.parse
import urllib.request

import pytest

from annotator import weights
from annotator.cli import main as cli_main
from annotator.cli_models import DEFAULT_OPSET

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one read chunk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
REAL_URLS = {e.url for e in weights.WEIGHTS.values()}


@pytest.fixture(autouse=True)
def local_only(monkeypatch, tmp_path):
    """urlopen may only reach 127.0.0.1; the cache and data folders live in tmp_path."""
    real_urlopen = urllib.request.urlopen
    opened: list[str] = []

    def guarded(req, *args, **kwargs):
        url = req.full_url if isinstance(req, urllib.request.Request) else str(req)
        opened.append(url)
        host = urllib.parse.urlsplit(url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to open a non-local URL: {url}")
        return real_urlopen(req, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    yield opened
    assert not REAL_URLS & set(opened), "a registry URL was opened"


class _Server:
    """Serves ``files`` {path: bytes} on 127.0.0.1 and counts GET requests per path."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = _Server({"/fake.pth": PAYLOAD})
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _entry(monkeypatch, url: str, *, sha256: str | None = PAYLOAD_SHA, size: int | None = len(PAYLOAD),
           arch: str = "yolact_tiny") -> weights.WeightsEntry:
    """Register a test entry named ``fake`` (the real registry is restored by monkeypatch)."""
    entry = weights.WeightsEntry(name="fake", url=url, filename="fake.pth", arch=arch, sha256=sha256, size=size)
    monkeypatch.setitem(weights.WEIGHTS, "fake", entry)
    return entry


def _run(argv: list[str]) -> int:
    """The real ``annotator`` entry point (exit 0 / 1 / 2, one ``error:`` line on stderr)."""
    return cli_main(argv)


def _cache_files(tmp_path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_registry_has_the_published_resnet50_hash_and_no_invented_ones():
    e = weights.WEIGHTS["yolact_resnet50_54_800000"]
    assert e.sha256 == "c12bb7a7e0343281db7f1407b376970bb52651f121d0b60bc4a49207acb6d6d7"
    assert e.size == 127_300_392 and e.arch == "yolact_r50_550" and (e.kind, e.store) == ("coco", "cache")
    assert e.url == "https://huggingface.co/dbolya/yolact-resnet50/resolve/main/yolact_resnet50_54_800000.pth"
    others = [x for x in weights.WEIGHTS.values() if x.name != e.name]
    assert all(x.sha256 is None and x.size is None for x in others)  # nothing invented
    yolact = [x for x in others if x.url.startswith("https://huggingface.co/dbolya/")]
    assert len(yolact) == 5 and all(x.url.endswith("/" + x.filename) for x in yolact)
    assert weights.default_cache_dir().parts[-2:] == ("annotator", "weights")
    assert DEFAULT_OPSET == __import__("segcore.export.onnx", fromlist=["x"]).DEFAULT_OPSET


def test_registry_entries_are_well_formed():
    """Every entry names a registered architecture of its family; torch hub files carry torch.hub's
    sha256 prefix; the ResNets are exactly torchvision's IMAGENET1K_V1 files; the BlendMask /
    CenterMask COCO files point at the hosts their READMEs name."""
    from pathlib import PurePosixPath

    from torch.hub import HASH_REGEX
    from torchvision.models import ResNet18_Weights, ResNet50_Weights, ResNet101_Weights

    from segcore.modeling import FAMILIES
    from segcore.modeling.registry import ARCHITECTURES, family_of_arch

    assert len(weights.WEIGHTS) == sum(len(f.official_weights) for f in FAMILIES.values())  # no name twice
    for name, e in weights.WEIGHTS.items():
        assert e.name == name and e.arch in ARCHITECTURES and e in family_of_arch(e.arch).official_weights, name
        assert e.url.startswith("https://") and e.source, name
        assert (e.kind, e.store) in {("coco", "cache"), ("imagenet", "torch_hub")}, name
        if e.store == "torch_hub":
            m = HASH_REGEX.search(e.filename)
            assert m and len(m.group(1)) >= 8 and e.name_hash_prefix() == m.group(1), name
            assert PurePosixPath(urllib.parse.urlsplit(e.url).path).name == e.filename, name
    for depth, enum in (("resnet18", ResNet18_Weights), ("resnet50", ResNet50_Weights),
                        ("resnet101", ResNet101_Weights)):
        e = weights.WEIGHTS[f"{depth}-imagenet"]
        assert e.url == enum.IMAGENET1K_V1.url and e.filename == e.url.rsplit("/", 1)[1]
        assert e.filename.startswith(depth + "-") and (e.kind, e.store) == ("imagenet", "torch_hub")
        assert e.sha256 is None and e.size is None
    assert weights.WEIGHTS["resnet50-imagenet"].filename == "resnet50-0676ba61.pth"  # the file torchvision names
    blend = [e for e in weights.WEIGHTS.values() if e.arch.startswith("blendmask")]
    assert {e.arch for e in blend} == {"blendmask_r50", "blendmask_r101", "blendmask_550_r50", "blendmask_rt_r50"}
    for e in blend:
        assert e.url == f"https://huggingface.co/ZjuCv/AdelaiDet/resolve/main/{e.filename.removeprefix('blendmask_')}"
    center = [e for e in weights.WEIGHTS.values() if e.arch.startswith("centermask")]
    assert len(center) == 5 and all(e.url.startswith("https://dl.dropbox.com/s/") and e.url.endswith("/" + e.filename)
                                    for e in center)
    assert weights.lookup("resnet50-0676ba61.pth").name == "resnet50-imagenet"  # file name accepted too
    with pytest.raises(ValueError, match="sha256 prefix"):
        weights.WeightsEntry(name="x", url="https://x/x.pth", filename="x.pth", arch="yolact_tiny",
                             kind="imagenet", store="torch_hub")
    with pytest.raises(ValueError, match="kind"):
        weights.WeightsEntry(name="x", url="https://x/x.pth", filename="x.pth", arch="yolact_tiny", kind="voc")


def test_list_prints_every_entry_under_its_kind(capsys):
    assert _run(["download-weights", "--list"]) == 0
    out = capsys.readouterr().out
    for name in weights.WEIGHTS:
        assert name in out
    assert "c12bb7a7e0343281db7f1407b376970bb52651f121d0b60bc4a49207acb6d6d7" in out
    unpublished = [e for e in weights.WEIGHTS.values() if e.store == "cache" and e.sha256 is None]
    assert len(unpublished) == 16 and out.count(weights.NOT_PUBLISHED) == len(unpublished)
    coco, imagenet = out.index(weights.KIND_TITLES["coco"]), out.index(weights.KIND_TITLES["imagenet"])
    assert coco < out.index("yolact_resnet50_54_800000") < imagenet < out.index("resnet50-imagenet")
    assert out.count("sha256 starts with ") == 3 and "sha256 starts with 0676ba61" in out
    assert "resnet50-imagenet  backbone of yolact_r50_550 and every architecture with it" in out


def test_download_verifies_and_is_not_repeated(server, monkeypatch, tmp_path, capsys):
    _entry(monkeypatch, server.url("/fake.pth"))
    cache = tmp_path / "cache"
    assert _run(["download-weights", "fake", "--cache", str(cache)]) == 0
    final = cache / "fake.pth"
    assert final.read_bytes() == PAYLOAD and hashlib.sha256(final.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert _cache_files(tmp_path) == ["fake.pth"]  # no .part left
    assert "matches the published hash" in capsys.readouterr().out
    assert server.requests == ["/fake.pth"]

    assert _run(["download-weights", "fake.pth", "--cache", str(cache)]) == 0  # .pth suffix accepted
    assert server.requests == ["/fake.pth"]  # served from the cache, no second request
    assert "already in the cache" in capsys.readouterr().out

    final.write_bytes(PAYLOAD[:-1] + b"X")  # corrupted in the cache: fetched again
    res = weights.download_weights("fake", cache_dir=cache, progress=False)
    assert res.downloaded and final.read_bytes() == PAYLOAD and len(server.requests) == 2


def test_default_cache_is_xdg(server, monkeypatch, tmp_path):
    _entry(monkeypatch, server.url("/fake.pth"))
    res = weights.download_weights("fake", progress=False)
    assert res.path == tmp_path / "xdg-cache" / "annotator" / "weights" / "fake.pth"
    assert res.sha256 == PAYLOAD_SHA and res.size == len(PAYLOAD) and res.verified == "published"


def test_wrong_sha256_exits_1_and_keeps_nothing(server, monkeypatch, tmp_path, capsys):
    wrong = "0" * 64
    _entry(monkeypatch, server.url("/fake.pth"), sha256=wrong)
    assert _run(["download-weights", "fake", "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "fake.pth" in err and wrong in err and PAYLOAD_SHA in err
    assert _cache_files(tmp_path) == []


def test_wrong_size_exits_1_and_keeps_nothing(server, monkeypatch, tmp_path, capsys):
    _entry(monkeypatch, server.url("/fake.pth"), size=len(PAYLOAD) - 10)
    assert _run(["download-weights", "fake", "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "size mismatch" in err
    assert _cache_files(tmp_path) == []


def test_offline_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _entry(monkeypatch, f"http://127.0.0.1:{port}/fake.pth")
    assert _run(["download-weights", "fake", "--cache", str(tmp_path / "cache")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("error: cannot download fake: offline or host unreachable (")
    assert _cache_files(tmp_path) == []
    with pytest.raises(weights.OfflineError):
        weights.download_weights("fake", cache_dir=tmp_path / "cache", progress=False)


def test_http_error_and_unknown_name_exit_2(server, monkeypatch, tmp_path, capsys):
    _entry(monkeypatch, server.url("/missing.pth"))
    assert _run(["download-weights", "fake", "--cache", str(tmp_path / "cache")]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert _cache_files(tmp_path) == []
    assert _run(["download-weights", "no_such_weights"]) == 2
    err = capsys.readouterr().err
    assert "unknown weights 'no_such_weights'" in err and "yolact_resnet50_54_800000" in err
    assert _run(["download-weights"]) == 2


def test_unpublished_hash_is_printed_and_remembered(server, monkeypatch, tmp_path, capsys):
    _entry(monkeypatch, server.url("/fake.pth"), sha256=None, size=None)
    cache = tmp_path / "cache"
    assert _run(["download-weights", "fake", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert PAYLOAD_SHA in out and weights.NOT_PUBLISHED in out
    assert _cache_files(tmp_path) == ["fake.pth", "fake.pth.sha256"]
    res = weights.download_weights("fake", cache_dir=cache, progress=False)
    assert not res.downloaded and res.verified == "remembered" and len(server.requests) == 1


def test_import_to_project_registers_a_model_version(monkeypatch, tmp_path, capsys):
    """The downloaded file goes through the import-weights path into a project (yolact_tiny
    state_dict in the official plain-state_dict format)."""
    import io

    import torch

    from annotator.project import Project
    from segcore.modeling.registry import build_model

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_model("yolact_tiny", num_classes=3).state_dict(), buf)
    body = buf.getvalue()
    srv = _Server({"/tiny.pth": body})
    srv.thread.start()
    try:
        _entry(monkeypatch, srv.url("/tiny.pth"), sha256=hashlib.sha256(body).hexdigest(), size=len(body),
               arch="yolact_tiny")
        Project.create(tmp_path / "proj").close()
        assert _run(["download-weights", "fake", "--cache", str(tmp_path / "cache"),
                     "--import-to", str(tmp_path / "proj")]) == 0
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
    assert "registered model version" in capsys.readouterr().out
    project = Project.open(tmp_path / "proj")
    try:
        (version,) = project.model_versions()
        assert version.arch == "yolact_tiny" and version.checkpoint.is_file()
    finally:
        project.close()


def _hub_entry(monkeypatch, url: str, filename: str) -> weights.WeightsEntry:
    """The real ``resnet18-imagenet`` entry with a local URL and file name (restored by monkeypatch)."""
    import dataclasses

    entry = dataclasses.replace(weights.WEIGHTS["resnet18-imagenet"], url=url, filename=filename)
    monkeypatch.setitem(weights.WEIGHTS, "resnet18-imagenet", entry)
    return entry


def test_imagenet_backbone_goes_to_the_torch_hub_folder_verified_by_its_name(server, monkeypatch, tmp_path,
                                                                               capsys):
    """A torch_hub entry lands in ``$TORCH_HOME/hub/checkpoints`` (where the YOLACT backbone lookup
    finds it), checked by the sha256 prefix in its name; a second run does not fetch it again."""
    from annotator.jobs.train import find_imagenet_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    filename = f"resnet18-{PAYLOAD_SHA[:8]}.pth"
    _hub_entry(monkeypatch, server.url("/fake.pth"), filename)
    assert weights.folder_of(weights.WEIGHTS["resnet18-imagenet"], tmp_path / "ignored") == hub
    assert find_imagenet_backbone("yolact_tiny") is None
    assert _run(["download-weights", "resnet18-imagenet"]) == 0
    out = capsys.readouterr().out
    assert f"starts with the {PAYLOAD_SHA[:8]} of its file name" in out and PAYLOAD_SHA in out
    assert sorted(p.name for p in hub.iterdir()) == [filename]  # no .part, no side file
    assert (hub / filename).read_bytes() == PAYLOAD
    assert not (tmp_path / "xdg-cache" / "annotator").exists()  # nothing in the annotator cache
    assert find_imagenet_backbone("yolact_tiny") == hub / filename  # training finds it by itself

    res = weights.download_weights("resnet18-imagenet", progress=False)
    assert not res.downloaded and res.verified == "name" and server.requests == ["/fake.pth"]
    assert _run(["download-weights", filename]) == 0  # the file name works as NAME
    assert "already in torch's hub checkpoints folder" in capsys.readouterr().out
    assert server.requests == ["/fake.pth"]

    assert _run(["download-weights", "resnet18-imagenet", "--cache", str(tmp_path / "cache")]) == 2
    assert "--cache" in capsys.readouterr().err
    assert _run(["download-weights", "resnet18-imagenet", "--import-to", str(tmp_path)]) == 2
    assert "--import-to" in capsys.readouterr().err and len(server.requests) == 1


def test_imagenet_file_whose_sha256_does_not_start_with_its_name_is_refused(server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    wrong = "0123abcd" if not PAYLOAD_SHA.startswith("0123abcd") else "fedc9876"
    _hub_entry(monkeypatch, server.url("/fake.pth"), f"resnet18-{wrong}.pth")
    assert _run(["download-weights", "resnet18-imagenet"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    assert f"resnet18-{wrong}.pth" in lines[0] and wrong in lines[0] and PAYLOAD_SHA in lines[0]
    assert server.requests == ["/fake.pth"]
    assert list(hub.iterdir()) == []  # neither the file nor its .part
    with pytest.raises(weights.ChecksumError):
        weights.download_weights("resnet18-imagenet", progress=False)
    assert list(hub.iterdir()) == []
    # a file already there under that name that does not verify is not taken for downloaded
    (hub / f"resnet18-{wrong}.pth").write_bytes(PAYLOAD)
    assert weights.find_downloaded("yolact_tiny", kind="imagenet") is None
