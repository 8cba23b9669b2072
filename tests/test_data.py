"""Error paths and the downloader of `maplex.data` (lesson nbs/10_data.ipynb).

The downloader is tested against HELP's real files kept in `$MAPLEX_DATA/help_raw`, served by a local
HTTP server (and a file:// URL): nothing here touches the network.
"""
import functools
import http.server
import os
import pickle
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maplex import nb201
from maplex.data import (DEVICE_COLS, HELP_COMMIT, NB201_DEVICES, NB201_FILE, POOL, REFERENCE_FILE, TEST,
                         ChecksumError, DataError, DeviceTable, DownloadError, LatencyTable, SpecMissingError,
                         UnknownDeviceError, _asset, cache_dir, convert_help, convert_help_reference, data_dir,
                         download_help, help_manifest, load_devices, load_help_reference_archs, load_nb201,
                         read_help_pt, read_latency_csv, spearman_matrix, write_latency_csv)

THREE = ["titan_rtx_1", "gold_6226", "pixel2"]  # the devices whose HELP files the shared folder keeps


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def shared() -> Path:
    "The project's shared data folder, from MAPLEX_DATA."
    env = os.environ.get("MAPLEX_DATA")
    if not env or not (Path(env) / NB201_FILE).is_file():
        pytest.skip("set MAPLEX_DATA to the folder holding nb201_latency_ms.csv.gz and help_raw/ (the shared data)")
    return Path(env)


@pytest.fixture(scope="module")
def nb(shared) -> LatencyTable:
    return load_nb201(shared / NB201_FILE)


@pytest.fixture
def toy() -> LatencyTable:
    return LatencyTable(pd.DataFrame({"dev_a": [1.0, 2.0, 3.0], "dev_b": [2.0, 4.5, 5.0]},
                                     index=pd.Index([0, 9, 123], name="arch_index")))


class _Server:
    "A local HTTP server over one folder, in a thread, counting the requests it answers."
    def __init__(self, root: Path):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args): pass
            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown(); self.httpd.server_close()


@pytest.fixture
def help_copy(shared, tmp_path) -> Path:
    "A private copy of the shared HELP files (so a test may tamper with it)."
    dst = tmp_path / "help_data"
    shutil.copytree(shared / "help_raw", dst)
    return dst


@pytest.fixture
def server(help_copy):
    srv = _Server(help_copy)
    yield srv
    srv.close()


def _frame(toy, col, values):
    df = toy.to_frame()
    df[col] = values
    return df


# ---------------------------------------------------------------- latency validation

@pytest.mark.parametrize("value,what", [(np.nan, "a blank (NaN)"), (-2.0, "a negative"), (0.0, "a zero"),
                                        (np.inf, "an infinite"), ("fast", "a non-number")])
def test_bad_latency_names_device_and_arch(toy, value, what):
    values = [1.0, value, 3.0]
    with pytest.raises(DataError, match=rf"device 'dev_a' has {what.replace('(', '[(]').replace(')', '[)]')} latency"
                                        r".*arch_index 9 \(\|avg_pool_3x3~0\|"):
        LatencyTable.from_frame(_frame(toy, "dev_a", values))


def test_duplicate_arch(toy):
    with pytest.raises(DataError, match="duplicate architecture arch_index 9"):
        LatencyTable.from_frame(toy.to_frame().iloc[[0, 1, 1]])
    with pytest.raises(DataError, match="duplicate architecture"):
        toy.take([0, 0])


def test_arch_str_not_in_nb201_uses_nb201_message(toy):
    bad = "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(nb201.ArchError) as nb_err:
        nb201.arch_index(bad)
    with pytest.raises(DataError) as err:
        LatencyTable.from_frame(_frame(toy, "arch_str", [bad] * 3))
    assert str(nb_err.value) in str(err.value) and "row 0" in str(err.value)


def test_arch_index_and_str_disagree(toy):
    with pytest.raises(DataError, match="disagree on 1 row.*arch_index 124 but .* is NB201 index 123"):
        LatencyTable.from_frame(_frame(toy, "arch_index", [0, 9, 124]))


@pytest.mark.parametrize("values", [[0, 9, 15625], [0, 9, -1], [0, 9, 1.5]])
def test_arch_index_out_of_range(toy, values):
    df = toy.to_frame().drop(columns="arch_str")
    df["arch_index"] = values
    with pytest.raises(DataError, match="is not an NB201 index"):
        LatencyTable.from_frame(df)


def test_frame_without_arch_columns(toy):
    with pytest.raises(DataError, match="needs an `arch_index` or an `arch_str`"):
        LatencyTable.from_frame(toy.to_frame().drop(columns=["arch_index", "arch_str"]))


def test_bad_device_names(toy):
    df = toy.to_frame()
    with pytest.raises(DataError, match="appear more than once"):
        LatencyTable.from_frame(df.set_axis(["arch_index", "arch_str", "dev_a", "dev_a"], axis=1))
    with pytest.raises(DataError, match="index=False"):
        LatencyTable.from_frame(df.rename(columns={"dev_b": "Unnamed: 0"}))
    with pytest.raises(DataError, match="no device columns"):
        LatencyTable.from_frame(df[["arch_index", "arch_str"]])


def test_unknown_device(toy):
    for call in (lambda: toy["dev_c"], lambda: toy.select(["dev_a", "dev_c"])):
        with pytest.raises(UnknownDeviceError, match=r"unknown device\(s\) \['dev_c'\].*known: dev_a, dev_b") as err:
            call()
        assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
        assert str(err.value).startswith("unknown")  # no KeyError quotes


def test_take_unknown_arch(toy):
    with pytest.raises(DataError, match=r"1 arch index\(es\) not in this table, e.g. \[7\]"):
        toy.take([0, 7])


def test_roundtrip_and_user_csv(toy, tmp_path):
    pd.testing.assert_frame_equal(LatencyTable.from_frame(toy.to_frame()).ms, toy.ms)
    toy.to_frame().drop(columns="arch_index").to_csv(tmp_path / "mine.csv", index=False)
    pd.testing.assert_frame_equal(read_latency_csv(tmp_path / "mine.csv").ms, toy.ms)
    write_latency_csv(toy, tmp_path / "mine.csv.gz")
    pd.testing.assert_frame_equal(read_latency_csv(tmp_path / "mine.csv.gz").ms, toy.ms, check_exact=True)
    toy.to_frame().to_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="bad.csv: column 'Unnamed: 0'"):
        read_latency_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="no latency file"):
        read_latency_csv(tmp_path / "missing.csv")


def test_select_take_order(toy):
    assert toy.select(["dev_b", "dev_a"]).devices == ["dev_b", "dev_a"]
    assert toy.take([123, 0]).archs.tolist() == [123, 0]
    assert toy.arch_strs[9] == nb201.arch_str(9)


# ---------------------------------------------------------------- device table

def test_device_table_specs():
    devs = load_devices(_asset("devices.csv"))
    assert devs.devices == list(NB201_DEVICES)
    assert list(devs.df.columns) == list(DEVICE_COLS)
    with pytest.raises(SpecMissingError, match="titanx_1: cores, max_clock_ghz; fpga: cores, max_clock_ghz, tdp_w"):
        devs.specs(["titanx_1", "fpga", "gold_6226"], require=True)
    assert devs.specs(["titanx_1"])["tdp_w"].tolist() == [250.0]  # blanks stay NaN without require
    assert np.isnan(devs["titanx_1"]["cores"])
    with pytest.raises(UnknownDeviceError, match=r"\['rtx_4090'\] in the device table; known: 1080ti_1"):
        devs.select(["rtx_4090"])
    with pytest.raises(UnknownDeviceError):
        devs["rtx_4090"]


@pytest.mark.parametrize("spec,value", [("cores", 0), ("tdp_w", -5), ("max_clock_ghz", "fast"), ("batch_size", 0)])
def test_device_spec_must_be_positive(spec, value):
    devs = load_devices(_asset("devices.csv"))
    with pytest.raises(DataError, match=f"'my_dev' has {spec} = .*left blank, not 0"):
        devs.add("my_dev", **{"class": "gpu", spec: value})


def test_device_table_needs_class():
    with pytest.raises(DataError, match="needs a `device` and a `class`"):
        DeviceTable(pd.DataFrame({"device": ["a"], "cores": [4]}))
    with pytest.raises(DataError, match="'a' has no class"):
        DeviceTable(pd.DataFrame({"device": ["a"], "class": [None]}))


def test_device_join(nb):
    devs = load_devices(_asset("devices.csv"))
    assert devs.join(nb.select(["gold_6226", "pixel3"])).index.tolist() == ["gold_6226", "pixel3"]
    with pytest.raises(SpecMissingError, match="pixel3: tdp_w"):
        devs.join(nb.select(["gold_6226", "pixel3"]), require=True)
    mine = LatencyTable(pd.DataFrame({"my_gpu": [1.0]}, index=pd.Index([0], name="arch_index")))
    with pytest.raises(UnknownDeviceError, match="my_gpu"):
        devs.join(mine)
    assert devs.add("my_gpu", **{"class": "gpu"}, cores=5120).join(mine).loc["my_gpu", "cores"] == 5120


def test_shipped_devices_match_shared(shared):
    pd.testing.assert_frame_equal(load_devices(_asset("devices.csv")).df, load_devices(shared / "devices.csv").df)


# ---------------------------------------------------------------- paths

def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MAPLEX_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MAPLEX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "maplex"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "maplex"


def test_data_dir_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("MAPLEX_DATA", raising=False)
    monkeypatch.setenv("MAPLEX_CACHE", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"MAPLEX_DATA is not set.*`maplex download`.*download_help\(\)"):
        data_dir()
    with pytest.raises(DataError, match="maplex download"):
        load_nb201()
    assert load_devices().devices == list(NB201_DEVICES)  # falls back to the shipped specs
    monkeypatch.setenv("MAPLEX_DATA", str(tmp_path))
    with pytest.raises(DataError, match=f"MAPLEX_DATA=.* has no {NB201_FILE}"):
        data_dir()


# ---------------------------------------------------------------- HELP files

def _pt(path: Path, obj) -> Path:
    "A torch-style zip archive holding `obj` pickled, without torch."
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/version", "3\n")
    return path


class Boom:
    def __reduce__(self): return (os.system, ("echo should-never-run",))


def test_read_help_pt_refuses_globals(tmp_path):
    assert read_help_pt(_pt(tmp_path / "ok.pt", {"a": [1, 2.5]})) == {"a": [1, 2.5]}
    with pytest.raises(DataError, match=r"boom.pt: refusing to load (posix|nt|os)\.system"):
        read_help_pt(_pt(tmp_path / "boom.pt", Boom()))
    with pytest.raises(DataError, match="refusing to load collections.OrderedDict"):
        read_help_pt(_pt(tmp_path / "od.pt", __import__("collections").OrderedDict(a=1)))
    (tmp_path / "plain.pt").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="not a torch zip archive"):
        read_help_pt(tmp_path / "plain.pt")


def test_read_help_pt_refuses_real_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save([1.0, 2.0], tmp_path / "list.pt")
    assert read_help_pt(tmp_path / "list.pt") == [1.0, 2.0]
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(DataError, match="tensor.pt: refusing to load torch"):
        read_help_pt(tmp_path / "tensor.pt")


def test_convert_matches_shared_table(shared, nb):
    converted = convert_help(shared / "help_raw")
    assert converted.devices == THREE
    pd.testing.assert_frame_equal(converted.ms, nb.select(THREE).ms, check_exact=True)
    refs = convert_help_reference(shared / "help_raw")
    assert refs == load_help_reference_archs(shared / REFERENCE_FILE)
    assert refs == [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]


def test_manifest_is_the_shared_one(shared):
    assert _asset("help_manifest.tsv").read_bytes() == (shared / "help_raw" / "MANIFEST.tsv").read_bytes()
    assert len(help_manifest()) == 29


# ---------------------------------------------------------------- downloader

def test_download_http_verify_convert_and_reuse(server, nb, tmp_path, shared):
    cache = tmp_path / "cache"
    assert download_help(cache, base_url=server.url, devices=THREE, progress=False) == cache
    assert len(server.requests) == 5 and all(r.startswith("/nasbench201/") for r in server.requests)
    pd.testing.assert_frame_equal(load_nb201(cache / NB201_FILE).ms, nb.select(THREE).ms, check_exact=True)
    assert load_help_reference_archs(cache / REFERENCE_FILE) == load_help_reference_archs(shared / REFERENCE_FILE)
    assert not list(cache.rglob("*.part")) and not list(cache.rglob("tmp*"))  # no temporary file left behind
    stamp = (cache / NB201_FILE).stat().st_mtime_ns
    # second call: everything cached, no request, nothing rewritten
    assert download_help(cache, base_url=server.url, devices=THREE, progress=False) == cache
    assert download_help(cache, base_url=server.url, devices=["pixel2"], progress=False) == cache
    assert len(server.requests) == 5
    assert (cache / NB201_FILE).stat().st_mtime_ns == stamp


def test_download_more_devices_later_keeps_earlier(server, nb, tmp_path):
    cache = tmp_path / "cache"
    download_help(cache, base_url=server.url, devices=["pixel2"], progress=False)
    assert len(server.requests) == 3
    download_help(cache, base_url=server.url, devices=["gold_6226"], progress=False)
    assert len(server.requests) == 4  # only the new device file
    got = load_nb201(cache / NB201_FILE)
    assert got.devices == ["gold_6226", "pixel2"]
    pd.testing.assert_frame_equal(got.ms, nb.select(["gold_6226", "pixel2"]).ms, check_exact=True)


def test_download_then_data_dir_uses_cache(help_copy, tmp_path, monkeypatch):
    monkeypatch.delenv("MAPLEX_DATA", raising=False)
    monkeypatch.setenv("MAPLEX_CACHE", str(tmp_path / "c"))
    assert download_help(base_url=help_copy.as_uri(), devices=THREE, progress=False) == tmp_path / "c"
    assert data_dir() == tmp_path / "c"
    assert load_nb201().devices == THREE
    assert load_help_reference_archs()[0] == 11982


def test_download_rejects_tampered_file(server, help_copy, tmp_path):
    target = help_copy / "nasbench201" / "latency" / "pixel2.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    want = help_manifest().set_index("path").loc["data/nasbench201/latency/pixel2.pt", "sha256"]
    import hashlib
    got = hashlib.sha256(bytes(data)).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as err:
        download_help(cache, base_url=server.url, devices=THREE, progress=False)
    msg = str(err.value)
    assert "data/nasbench201/latency/pixel2.pt" in msg and want in msg and got in msg
    assert not (cache / "help" / HELP_COMMIT / "data/nasbench201/latency/pixel2.pt").exists()
    assert not (cache / NB201_FILE).exists() and not list(cache.rglob("*.part")) and not list(cache.rglob("tmp*"))


def test_download_replaces_tampered_cache_file(server, nb, tmp_path):
    cache = tmp_path / "cache"
    download_help(cache, base_url=server.url, devices=["pixel2"], progress=False)
    cached = cache / "help" / HELP_COMMIT / "data/nasbench201/latency/pixel2.pt"
    cached.write_bytes(b"junk")
    (cache / NB201_FILE).unlink()
    download_help(cache, base_url=server.url, devices=["pixel2"], progress=False)
    assert server.requests[-1] == "/nasbench201/latency/pixel2.pt"
    pd.testing.assert_frame_equal(load_nb201(cache / NB201_FILE).ms, nb.select(["pixel2"]).ms, check_exact=True)


def test_download_offline_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DownloadError, match=r"could not fetch http://127.0.0.1:1/nasbench201/str_arch2idx.pt.*"
                                            r"check your connection.*MAPLEX_DATA"):
        download_help(tmp_path / "c", base_url="http://127.0.0.1:1/", progress=False)
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "c" / NB201_FILE).exists()


@pytest.fixture
def cut_short_url():
    "A local server that announces 1000 bytes for every file and hangs up after 10."
    sock = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try: conn, _ = sock.accept()
            except OSError: return  # closed
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()


def test_download_cut_short_is_one_line(cut_short_url, tmp_path):
    with pytest.raises(DownloadError, match=r"str_arch2idx.pt: the download was cut short \(IncompleteRead\(10 bytes "
                                            r"read, 990 more expected\)\).*check your connection") as err:
        download_help(tmp_path / "c", base_url=cut_short_url, devices=["pixel2"], progress=False)
    assert len(str(err.value).splitlines()) == 1
    assert [p for p in (tmp_path / "c").rglob("*") if p.is_file()] == []  # neither the file nor a temporary one


def test_download_missing_file_and_unknown_device(server, tmp_path):
    with pytest.raises(DownloadError, match="1080ti_1.pt: HTTP 404"):
        download_help(tmp_path / "c", base_url=server.url, devices=["1080ti_1"], progress=False)
    with pytest.raises(UnknownDeviceError, match=r"\['rtx_4090'\] in the HELP manifest; known: .*2080ti_1"):
        download_help(tmp_path / "c", base_url=server.url, devices=["rtx_4090"], progress=False)


# ---------------------------------------------------------------- shared table facts

def test_nb201_table(nb):
    assert len(nb) == 15625 and nb.devices == list(NB201_DEVICES)
    assert nb.archs.tolist() == list(range(15625))
    assert (nb.arch_strs.to_numpy() == np.array(nb201.all_arch_strs(), dtype=object)).all()


def test_pool_test_split(nb):
    assert set(POOL).isdisjoint(TEST) and len(POOL) + len(TEST) == 15625
    assert len(nb.take(POOL)) == 900 and nb.take(TEST).archs[0] == 900


def test_spearman_matches_shared(shared, nb):
    rho = spearman_matrix(nb)
    ref = pd.read_csv(shared / "nb201_spearman.csv", index_col="device").loc[rho.index, rho.columns]
    assert ((rho.round(4) - ref).abs().to_numpy().max()) < 1e-6  # the file holds 4 decimals
    assert np.abs(rho.to_numpy() - ref.to_numpy()).max() <= 5e-5 + 1e-12
