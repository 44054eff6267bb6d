//! Plugins shipped between teams: packed, signed, published to a folder channel and an HTTP
//! channel, installed into fresh registries and trained with; every damaged, foreign, escaping,
//! unsigned or untrusted package, and every broken channel, refused in one line with nothing
//! half-installed or half-published; the first load of a library that crashes or hangs refused
//! from a child process.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use gymnos_tests::{data_dir, library, read_json, Run, Sandbox};
use serde_json::{json, Value};

/// Everything a test makes: the packing team's keys and packages, channels, registries.
struct Team {
    sandbox: Sandbox,
}

impl Team {
    fn new() -> Self {
        Team { sandbox: Sandbox::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.sandbox.dir.path().join(name)
    }

    fn host(&self, args: &[&str]) -> Run {
        self.sandbox.host(args)
    }

    /// `plugins pack LIB [--sign KEY] -o DIR`; the package's path.
    fn pack(&self, crate_name: &str, key: Option<&Path>, out: &str) -> PathBuf {
        let lib = library(crate_name);
        let mut args = vec!["plugins", "pack", lib.to_str().unwrap(), "-o"];
        let out = self.path(out);
        args.push(out.to_str().unwrap());
        if let Some(key) = key {
            args.extend(["--sign", key.to_str().unwrap()]);
        }
        let done = self.host(&args).ok().to_string();
        let path = done.split(" into ").nth(1).unwrap().split(", signed").next().unwrap().trim();
        PathBuf::from(path)
    }

    /// A new registry `name/registry.json`, empty.
    fn registry(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        self.host(&["plugins", "init", "--no-builtins", dir.to_str().unwrap()]).ok();
        dir.join("registry.json")
    }
}

/// `gymnos-host --registry REGISTRY ARGS`, in the sandbox.
fn on(team: &Team, registry: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--registry", registry.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = Command::new(gymnos_tests::artifact_dir().join("gymnos-host"))
        .args(&all)
        .current_dir(team.sandbox.dir.path())
        .output()
        .unwrap();
    Run::of(out)
}

fn wine(name: &str) -> Value {
    json!({
        "experiment": { "name": name, "seed": 5 },
        "dataset": { "plugin": "csv@^1", "config": { "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" } },
        "preprocessors": [{ "plugin": "standardize" }],
        "model": { "plugin": "mlp@^1", "config": { "hidden": [8] } },
        "training": { "epochs": 2, "batch_size": 16, "device": "cpu" }
    })
}

/// What a registry holds, to check a refusal left it as it was: its files' bytes.
fn snapshot(registry: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = registry.parent().unwrap();
    let mut files: Vec<(PathBuf, Vec<u8>)> =
        walk(dir).into_iter().map(|p| (p.clone(), fs::read(&p).unwrap())).collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if !path.to_string_lossy().ends_with(".lock") {
            out.push(path);
        }
    }
    out
}

/// A package rewritten by `change` (Python's tarfile: entries in, entries out, gzipped).
fn repack(source: &Path, target: &Path, change: &str) {
    let script = format!(
        r#"
import io, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
entries = []
with tarfile.open(src, "r:gz") as t:
    for m in t.getmembers():
        entries.append((m.name, t.extractfile(m).read()))
{change}
with tarfile.open(dst, "w:gz") as t:
    for name, data in entries:
        info = tarfile.TarInfo(name); info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#
    );
    let out = Command::new("python3").arg("-c").arg(script).arg(source).arg(target).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An HTTP server of `dir` on a free loopback port, killed when dropped.
struct Server(Child, u16);

impl Server {
    fn serve(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned by the guard at once: killed and waited for on every path, the panic's too.
        let server = Server(child, port);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the HTTP server did not start");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bar: pack, publish, install by requirement from the channel into a fresh registry that
/// requires signatures, and train; unsigned and untrusted packages refused there.
#[test]
fn packed_signed_and_published_plugins_install_from_a_folder_channel_and_train() {
    let team = Team::new();
    team.host(&["plugins", "keygen", "--name", "team", "--dir", team.path("keys").to_str().unwrap()]).ok();
    let key = team.path("keys/team.key");
    let channel = team.path("channel");
    for crate_name in ["gymnos-csv-dataset", "gymnos-standardize", "gymnos-mlp"] {
        let package = team.pack(crate_name, Some(&key), "packages");
        assert!(package.file_name().unwrap().to_string_lossy().ends_with("-x86_64-unknown-linux-gnu.gplugin"));
        team.host(&["plugins", "publish", package.to_str().unwrap(), "--channel", channel.to_str().unwrap()]).ok();
    }
    let index = read_json(&channel.join("index.json"));
    assert_eq!(index["packages"].as_array().unwrap().len(), 3);

    // Another team: a registry that trusts the key and requires signatures.
    let registry = team.registry("consumer");
    on(
        &team,
        &registry,
        &["plugins", "trust", "add", team.path("keys/team.pub").to_str().unwrap(), "--comment", "team"],
    )
    .ok();
    on(&team, &registry, &["plugins", "trust", "require", "on"]).ok();
    for reference in ["csv@^1", "standardize@^1", "mlp@^1"] {
        let kind = if reference.starts_with("csv") { "dataset" } else { "model" };
        let mut args = vec!["plugins", "install", reference, "--channel", channel.to_str().unwrap()];
        if reference.starts_with("csv") {
            args.extend(["--kind", kind]);
        }
        on(&team, &registry, &args).ok();
    }
    let listed: Vec<Value> = serde_json::from_str(on(&team, &registry, &["plugins", "list", "--json"]).ok()).unwrap();
    assert_eq!(listed.len(), 3);
    let key_id = read_json(&registry)["trust"]["keys"][0]["id"].as_str().unwrap().to_string();
    assert!(listed.iter().all(|r| r["signed_by"] == key_id.as_str() && r["status"] == "loadable"), "{listed:?}");
    let path = team.sandbox.experiment("wine", &wine("wine"));
    on(&team, &registry, &["run", path.to_str().unwrap(), "--no-progress", "--output-root", "runs"]).ok();
    let record = read_json(
        &fs::read_dir(team.path("runs/wine/executions")).unwrap().next().unwrap().unwrap().path().join("metrics.json"),
    );
    assert_eq!(record["status"], "completed");

    // Unsigned, and signed by a key this registry does not trust: refused, nothing changed.
    let before = snapshot(&registry);
    let unsigned = team.pack("gymnos-linear", None, "unsigned");
    let line = on(&team, &registry, &["plugins", "install", unsigned.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(
        line,
        format!(
            "error: {}: unsigned, and this registry requires signatures (`plugins trust require on`): sign it with `gymnos-host plugins pack LIB --sign KEY`; not installed",
            unsigned.display()
        )
    );
    team.host(&["plugins", "keygen", "--name", "stranger", "--dir", team.path("keys").to_str().unwrap()]).ok();
    let foreign = team.pack("gymnos-linear", Some(&team.path("keys/stranger.key")), "stranger");
    let line = on(&team, &registry, &["plugins", "install", foreign.to_str().unwrap()]).one_line_error().to_string();
    assert!(
        line.contains("signed by a key this registry does not trust") && line.ends_with("; not installed"),
        "{line}"
    );
    let bare = library("gymnos-linear");
    let line = on(&team, &registry, &["plugins", "install", bare.to_str().unwrap()]).one_line_error().to_string();
    assert!(line.contains("a bare library, and this registry installs only signed packages"), "{line}");
    assert_eq!(snapshot(&registry), before, "the registry and its store are as they were");

    // `plugins info` reads a package without loading it.
    let package = fs::read_dir(team.path("packages")).unwrap().find_map(|e| {
        let p = e.unwrap().path();
        p.to_string_lossy().contains("gymnos-mlp-").then_some(p)
    });
    let info: Value = serde_json::from_str(
        on(&team, &registry, &["plugins", "info", package.unwrap().to_str().unwrap(), "--json"]).ok(),
    )
    .unwrap();
    assert_eq!(info["manifest"]["components"][0]["name"], "mlp");
    assert_eq!((info["signed_by"].as_str(), info["signature_trusted"].as_bool()), (Some(key_id.as_str()), Some(true)));
    assert_eq!(info["manifest"]["build"]["cxx11_abi"], true);
}

/// An HTTP channel: searched, installed from, and a newer version found and upgraded to; two
/// publishers at once lose nothing.
#[test]
fn an_http_channel_offers_versions_and_upgrades_them() {
    let team = Team::new();
    let channel = team.path("web");
    let v1 = team.pack("gymnos-fixture-versioned-v1", None, "v1");
    let v2 = team.pack("gymnos-fixture-versioned-v2", None, "v2");
    let mlp = team.pack("gymnos-mlp", None, "mlp");
    // Three publishers at once.
    let publishers: Vec<Child> = [&v1, &v2, &mlp]
        .iter()
        .map(|p| {
            team.sandbox
                .command(&["plugins", "publish", p.to_str().unwrap(), "--channel", channel.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in publishers {
        Run::of(p.wait_with_output().unwrap()).ok();
    }
    assert_eq!(read_json(&channel.join("index.json"))["packages"].as_array().unwrap().len(), 3);
    let server = Server::serve(&channel);
    let url = server.url();

    let registry = team.registry("web-consumer");
    let found: Vec<Value> =
        serde_json::from_str(on(&team, &registry, &["plugins", "search", "--channel", &url, "--json"]).ok()).unwrap();
    let mut names: Vec<String> =
        found.iter().map(|f| format!("{}@{}", f["name"].as_str().unwrap(), f["version"].as_str().unwrap())).collect();
    names.sort();
    assert_eq!(names, ["mlp@1.1.0", "versioned@1.2.0", "versioned@2.0.0"]);
    on(&team, &registry, &["plugins", "channel", "add", &url]).ok();
    on(&team, &registry, &["plugins", "install", "versioned@^1"]).ok();
    let outdated: Vec<Value> =
        serde_json::from_str(on(&team, &registry, &["plugins", "outdated", "--json"]).ok()).unwrap();
    assert_eq!(outdated.len(), 1, "{outdated:?}");
    assert_eq!((outdated[0]["installed"].as_str(), outdated[0]["available"].as_str()), (Some("1.2.0"), Some("2.0.0")));
    on(&team, &registry, &["plugins", "upgrade", "versioned"]).ok();
    let listed: Vec<Value> = serde_json::from_str(on(&team, &registry, &["plugins", "list", "--json"]).ok()).unwrap();
    let mut versions: Vec<&str> = listed.iter().map(|r| r["version"].as_str().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, ["1.2.0", "2.0.0"]);
    assert!(on(&team, &registry, &["plugins", "outdated"]).ok().starts_with("every installed plugin is the newest"));

    // The server gone: one line naming the channel.
    drop(server);
    let line = on(&team, &registry, &["plugins", "install", "mlp@^1"]).one_line_error().to_string();
    assert!(line.starts_with(&format!("error: channel {url}: unreachable")), "{line}");
}

/// Every broken package and channel: one line, nothing installed, nothing published.
#[test]
fn damaged_foreign_escaping_and_lying_packages_and_channels_are_refused() {
    let team = Team::new();
    let good = team.pack("gymnos-mlp", None, "good");
    let registry = team.registry("reg");
    let before = snapshot(&registry);
    let refused = |path: &Path| {
        on(&team, &registry, &["plugins", "install", path.to_str().unwrap()]).one_line_error().to_string()
    };
    let bad = |name: &str| team.path(&format!("{name}.gplugin"));

    // Truncated.
    let bytes = fs::read(&good).unwrap();
    fs::write(bad("truncated"), &bytes[..bytes.len() / 2]).unwrap();
    let line = refused(&bad("truncated"));
    assert!(line.contains("the package is damaged") || line.contains("not a gymnos plugin package"), "{line}");
    // One byte of the library changed.
    repack(&good, &bad("library"), "entries = [(n, d[:5000] + bytes([d[5000] ^ 1]) + d[5001:] if n.startswith('lib/') else d) for n, d in entries]");
    let line = refused(&bad("library"));
    assert!(
        line.contains("the package is damaged: lib/libgymnos_mlp.so has sha256")
            && line.ends_with("it was changed after packing"),
        "{line}"
    );
    // One byte of the manifest changed (the component's version): the library says otherwise.
    repack(&good, &bad("manifest"), "entries = [(n, d.replace(b'\"version\": \"1.1.0\",\\n      \"description\"', b'\"version\": \"1.1.1\",\\n      \"description\"') if n == 'manifest.json' else d) for n, d in entries]");
    let line = refused(&bad("manifest"));
    assert!(line.contains("the package's manifest disagrees with its library: the manifest says components"), "{line}");
    // Foreign: any other archive, and not an archive at all.
    repack(&good, &bad("foreign"), "entries = [('notes.txt', b'hello')]");
    assert!(refused(&bad("foreign")).contains("not a gymnos plugin package: it holds `notes.txt`"));
    fs::write(bad("text"), "not an archive").unwrap();
    assert!(refused(&bad("text")).ends_with("not a gymnos plugin package: not a gzipped tar archive"));
    fs::write(bad("empty"), "").unwrap();
    assert!(refused(&bad("empty")).ends_with("not a gymnos plugin package: the file is empty"));
    // Not a file at all: refused at once, not read for ever.
    let line = on(&team, &registry, &["plugins", "install", "/dev/zero"]).one_line_error().to_string();
    assert!(line.starts_with("error: /dev/zero: not a regular file or a folder"), "{line}");
    // An entry that climbs out of the package.
    repack(&good, &bad("escape"), "entries.append(('../../evil.sh', b'#!/bin/sh'))");
    let line = refused(&bad("escape"));
    assert!(line.ends_with("the archive's entry `../../evil.sh` would leave the package's folder; refused"), "{line}");
    assert!(!team.path("evil.sh").exists() && !team.sandbox.dir.path().parent().unwrap().join("evil.sh").exists());
    assert_eq!(snapshot(&registry), before, "nothing half-installed");

    // Channels: missing, an index naming a file that is not there, a tampered package and index.
    let channel = team.path("channel");
    let install = |c: &Path| {
        on(&team, &registry, &["plugins", "install", "mlp@^1", "--channel", c.to_str().unwrap()])
            .one_line_error()
            .to_string()
    };
    assert_eq!(
        install(&team.path("nowhere")),
        format!("error: channel {}: no such folder", team.path("nowhere").display())
    );
    team.host(&["plugins", "publish", good.to_str().unwrap(), "--channel", channel.to_str().unwrap()]).ok();
    let index_before = fs::read(channel.join("index.json")).unwrap();
    let published = channel.join(good.file_name().unwrap());
    let original = fs::read(&published).unwrap();
    fs::remove_file(&published).unwrap();
    assert!(install(&channel).ends_with("which is not in the channel"));
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    fs::write(&published, &changed).unwrap();
    let line = install(&channel);
    assert!(line.contains("the index says") && line.ends_with(": refused"), "{line}");
    fs::write(&published, &original).unwrap();
    let index = String::from_utf8(index_before.clone()).unwrap();
    fs::write(
        channel.join("index.json"),
        index.replace("\"version\": \"1.1.0\"\n        }", "\"version\": \"1.1.9\"\n        }"),
    )
    .unwrap();
    let line = on(&team, &registry, &["plugins", "install", "mlp@=1.1.9", "--channel", channel.to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(line.contains("the index describes") && line.contains("the package is"), "{line}");
    fs::write(channel.join("index.json"), &index_before).unwrap();
    // Publishing a damaged package changes nothing in the channel.
    let publish =
        team.host(&["plugins", "publish", bad("library").to_str().unwrap(), "--channel", channel.to_str().unwrap()]);
    assert!(publish.one_line_error().contains("the package is damaged"));
    assert_eq!(fs::read(channel.join("index.json")).unwrap(), index_before, "nothing half-published");
    assert_eq!(
        fs::read_dir(&channel)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "gplugin"))
            .count(),
        1
    );
    assert_eq!(snapshot(&registry), before, "nothing half-installed");
    // And the good package still installs from the channel.
    on(&team, &registry, &["plugins", "install", "mlp@^1", "--channel", channel.to_str().unwrap()]).ok();
}

/// The safe first load: a library whose loading aborts, and one whose loading hangs, are
/// refused from the child process that opened them, and the registry is untouched.
#[test]
fn a_library_that_crashes_or_hangs_when_loaded_is_refused_by_the_probe() {
    let team = Team::new();
    let registry = team.registry("reg");
    let before = snapshot(&registry);
    let crash = library("gymnos-fixture-crash-on-load");
    let line = on(&team, &registry, &["plugins", "install", crash.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(
        line,
        format!(
            "error: {}: loading it crashed the probe process: signal 6 (SIGABRT, an abort); not installed",
            crash.display()
        )
    );
    let hang = library("gymnos-fixture-hang-on-load");
    let started = std::time::Instant::now();
    let out = Command::new(gymnos_tests::artifact_dir().join("gymnos-host"))
        .args(["--registry", registry.to_str().unwrap(), "plugins", "install", hang.to_str().unwrap()])
        .env("GYMNOS_PROBE_TIMEOUT", "3")
        .output()
        .unwrap();
    let line = Run::of(out).one_line_error().to_string();
    assert_eq!(
        line,
        format!("error: {}: loading it did not finish within 3 s (it hangs at load); not installed", hang.display())
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(snapshot(&registry), before);
    // A folder with both and a good library: the good one is installed, the two reported.
    let folder = team.path("mixed");
    fs::create_dir_all(&folder).unwrap();
    for lib in [&crash, &library("gymnos-linear")] {
        fs::copy(lib, folder.join(lib.file_name().unwrap())).unwrap();
    }
    let out = on(&team, &registry, &["plugins", "install", folder.to_str().unwrap()]).ok().to_string();
    assert!(
        out.contains("installed model linear@1.0.0") && out.contains("refused: ") && out.contains("SIGABRT"),
        "{out}"
    );
}

/// `plugins list` flags, without loading anything, a library built for another libtorch,
/// another C++ ABI or CUDA on this CPU-only libtorch, and says what to do.
#[test]
fn plugins_list_flags_builds_this_host_cannot_load() {
    let team = Team::new();
    let registry = team.registry("reg");
    on(&team, &registry, &["plugins", "install", library("gymnos-mlp").to_str().unwrap()]).ok();
    let state_path = registry.parent().unwrap().join("plugin-store/state.json");
    let state = read_json(&state_path);
    let listed_as = |change: &dyn Fn(&mut Value)| {
        let mut changed = state.clone();
        change(&mut changed["libraries"][0]);
        fs::write(&state_path, serde_json::to_string_pretty(&changed).unwrap()).unwrap();
        let listed: Vec<Value> =
            serde_json::from_str(on(&team, &registry, &["plugins", "list", "--json"]).ok()).unwrap();
        listed[0]["status"].as_str().unwrap().to_string()
    };
    let flagged = |change: &dyn Fn(&mut Value)| {
        let status = listed_as(change);
        assert!(status.starts_with("incompatible: "), "{status}");
        status
    };
    // A CUDA build: flagged where this host's libtorch (the set-up's) is CPU-only, loadable
    // where it has CUDA.
    let host_has_cuda = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/libtorch/lib/libtorch_cuda.so").is_file();
    let status = listed_as(&|l| l["build"]["cuda"] = json!(true));
    if host_has_cuda {
        assert_eq!(status, "loadable");
    } else {
        assert!(status.starts_with("incompatible: a CUDA build") && status.contains("CPU-only"), "{status}");
    }
    let status = flagged(&|l| l["build"]["cxx11_abi"] = json!(false));
    assert!(status.starts_with("incompatible: built with the old C++ ABI"), "{status}");
    let status = flagged(&|l| l["libtorch_version"] = json!("2.10.0"));
    assert!(status.contains("2.10.0") && status.contains("2.11.0"), "{status}");
    let table = on(&team, &registry, &["plugins", "list"]).ok().to_string();
    assert!(table.contains("incompatible"), "{table}");
}
