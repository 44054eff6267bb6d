//! `gymnos-host plugins pack|publish|keygen|trust|channel|search|outdated|upgrade`, package
//! info and the probe: how plugins travel between teams (`gymnos_host::package`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use gymnos_host::{
    build_facts::{BuildFacts, HostLibtorch},
    outln,
    package::{
        self,
        channel::{candidates, Channel, IndexEntry},
        signing::{self, TrustedKey},
        Package, PackageManifest,
    },
    probe::Probe,
    registry::{LibraryRecord, Registry},
    InstallReport, PluginManager, PluginRef,
};
use gymnos_plugin_api::ComponentKind;
use serde_json::json;

use super::output::{print_json, print_table};

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Trust a public key (minisign's: a `.pub` file or its `RW...` line).
    Add {
        key: String,
        /// Who the key belongs to.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// The trusted keys, and whether signatures are required.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key, by its id.
    Remove { id: String },
    /// Install only packages signed by a trusted key (`on`), or also unsigned ones (`off`).
    Require { setting: OnOff },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Install from a channel (a folder, or an http(s) URL) when no --channel is given.
    Add {
        channel: String,
    },
    /// The registry's channels, in the order they are searched.
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        channel: String,
    },
}

/// The channels of `--channel`, else the registry's.
pub fn channels(given: &[String], registry: &Registry) -> Result<Vec<Channel>> {
    let named: Vec<&String> =
        if given.is_empty() { registry.channels().iter().collect() } else { given.iter().collect() };
    if named.is_empty() {
        bail!("no channel: give one with --channel DIR|URL, or add one with `gymnos-host plugins channel add DIR|URL`");
    }
    Ok(named.into_iter().map(|c| Channel::parse(c)).collect())
}

/// Changes the registry's declaration under its lock.
fn update(registry_path: &Path, change: impl FnOnce(&mut Registry) -> Result<()>) -> Result<()> {
    let _lock = Registry::lock(registry_path)?;
    let mut registry = Registry::load(registry_path)?;
    change(&mut registry)?;
    registry.save()?;
    Ok(())
}

/// `plugins pack`: the library probed (in a child process), its manifest, its crate's README and
/// licence, optionally signed, into `NAME-VERSION-TARGET.gplugin`.
pub fn pack(
    library: &Path,
    sign: Option<&Path>,
    out: Option<&Path>,
    crate_dir: Option<&Path>,
    json: bool,
) -> Result<()> {
    let library = std::path::absolute(library)?;
    let bytes = std::fs::read(&library).with_context(|| format!("{}: cannot read", library.display()))?;
    let build = BuildFacts::of(&bytes).with_context(|| format!("{}: not an ELF library", library.display()))?;
    let description =
        Probe::of_this_binary()?.describe(&library).map_err(|e| anyhow::anyhow!("{}: {e}", library.display()))?;
    let file_name = library.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let record = LibraryRecord::described(description, String::new(), String::new(), (0, 0));
    let mut manifest = PackageManifest::of(&record, &file_name, &bytes, build);
    let documents = documents(crate_dir.map(Path::to_path_buf).or_else(|| crate_of(&library, &manifest.package)))?;
    manifest.documents = documents.iter().map(|(n, _)| n.clone()).collect();
    let signed = match sign {
        Some(key) => {
            let comment = format!("gymnos plugin {} {}", manifest.package, manifest.version);
            Some(signing::sign(key, &package::manifest_json(&manifest), &comment)?)
        }
        None => None,
    };
    let dir = out.map_or_else(|| std::env::current_dir().context("the current folder"), |d| Ok(d.to_path_buf()))?;
    let path = Package::write(&dir, &manifest, &bytes, &documents, signed.as_ref().map(|(s, _)| s.as_str()))?;
    let signer = signed.map(|(_, id)| id);
    if json {
        print_json(&json!({ "package": path, "manifest": manifest, "signed_by": signer }));
    } else {
        let by = signer.map(|id| format!(", signed by key {id}")).unwrap_or_default();
        outln!("packed {} into {}{by}", package::channel::describe(&manifest), path.display());
    }
    Ok(())
}

/// The crate a library was built from: the nearest folder above it whose Cargo.toml names
/// `package` (a standalone crate's `target/release/` sits inside it).
fn crate_of(library: &Path, package: &str) -> Option<PathBuf> {
    library
        .ancestors()
        .skip(1)
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.lines().any(|l| l.trim() == format!("name = \"{package}\"")))
        })
        .map(Path::to_path_buf)
}

/// The README and licence files of a crate's folder.
fn documents(crate_dir: Option<PathBuf>) -> Result<Vec<(String, Vec<u8>)>> {
    let Some(dir) = crate_dir else { return Ok(Vec::new()) };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot read", dir.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = ["README", "LICENSE", "LICENCE"].iter().any(|p| name.starts_with(p));
        if wanted && entry.file_type().is_ok_and(|t| t.is_file()) {
            found.push((name, std::fs::read(entry.path())?));
        }
    }
    found.sort();
    Ok(found)
}

/// `plugins info FILE.gplugin`: the package's manifest, checked, without loading its library.
pub fn info(registry: Option<&Registry>, path: &Path, json: bool) -> Result<()> {
    let package = Package::read(path)?;
    let m = &package.manifest;
    let signer = package.signature.as_deref().and_then(signing::signer_of);
    let verified = match (&package.signature, registry) {
        (Some(signature), Some(registry)) => {
            Some(signing::verify(&registry.trust().keys, signature, &package.manifest_bytes).is_ok())
        }
        _ => None,
    };
    let host = HostLibtorch::cached();
    let compatible = m.build.mismatch(host);
    if json {
        print_json(
            &json!({ "manifest": m, "signed_by": signer, "signature_trusted": verified, "incompatible": compatible }),
        );
        return Ok(());
    }
    outln!("{} {} ({})", m.package, m.version, path.display());
    outln!("  library:   lib/{} ({} bytes, sha256 {})", m.library, m.library_bytes, m.library_sha256);
    outln!("  built for: plugin API {} (hosts {}), libtorch {}", m.api_version, m.host_range, m.libtorch);
    let abi = match m.build.cxx11_abi {
        Some(true) => "C++11 ABI",
        Some(false) => "old C++ ABI",
        None => "no C++ strings",
    };
    outln!("             {}, {abi}, {}", m.build.target, if m.build.cuda { "CUDA" } else { "CPU (no CUDA needed)" });
    outln!("  built at:  {}", m.built_at);
    outln!(
        "  signed:    {}",
        match (&signer, verified) {
            (None, _) => "no".to_string(),
            (Some(id), Some(true)) => format!("by key {id} (trusted by this registry)"),
            (Some(id), Some(false)) => format!("by key {id} (not trusted by this registry)"),
            (Some(id), None) => format!("by key {id}"),
        }
    );
    if !m.documents.is_empty() {
        outln!("  documents: {}", m.documents.join(", "));
    }
    if let Some(why) = compatible {
        outln!("  here:      incompatible: {why}");
    }
    for c in &m.components {
        outln!("\n{} {}@{}: {}", c.kind, c.name, c.version, c.description);
        let cells: Vec<Vec<String>> = c
            .config
            .iter()
            .map(|k| {
                let default = k.default.as_ref().map_or_else(|| "(required)".to_string(), |d| d.to_string());
                vec![k.name.clone(), k.ty.clone(), default, k.description.clone()]
            })
            .collect();
        if !cells.is_empty() {
            print_table(&["KEY", "TYPE", "DEFAULT", "DESCRIPTION"], &cells);
        }
    }
    Ok(())
}

/// `plugins probe LIB` (hidden): opens a library in this process and prints what it says of
/// itself, for the process that asked (`gymnos_host::probe`).
pub fn probe(library: &Path) -> Result<()> {
    let manager =
        PluginManager::new(Registry::empty(Path::new("probe/registry.json")), gymnos_host::HostCompat::default());
    let loaded = manager.load(library)?;
    outln!("{}", serde_json::to_string(&gymnos_host::registry::LibraryDescription::of(&loaded))?);
    Ok(())
}

pub fn publish(package: &Path, channel: &str, json: bool) -> Result<()> {
    let entry = Channel::parse(channel).publish(package)?;
    if json {
        print_json(&entry);
    } else {
        outln!("published {} {} to {} ({})", entry.package, entry.version, channel, entry.file);
    }
    Ok(())
}

pub fn keygen(dir: &Path, name: &str) -> Result<()> {
    let key = signing::keygen(dir, name)?;
    outln!(
        "key {} in {} (secret: keep it) and {}",
        key.id,
        dir.join(format!("{name}.key")).display(),
        dir.join(format!("{name}.pub")).display()
    );
    outln!("  teams that trust it: gymnos-host plugins trust add {}", key.public_key);
    Ok(())
}

pub fn trust(registry_path: &Path, command: TrustCommand) -> Result<()> {
    match command {
        TrustCommand::Add { key, comment } => {
            let mut key = signing::public_key_argument(&key)?;
            if !comment.is_empty() {
                key.comment = comment;
            }
            let id = key.id.clone();
            update(registry_path, |r| {
                r.trust_mut().keys.retain(|k| k.id != key.id);
                r.trust_mut().keys.push(key);
                Ok(())
            })?;
            outln!("trusting key {id}");
        }
        TrustCommand::Remove { id } => {
            let id = id.to_uppercase();
            update(registry_path, |r| {
                let before = r.trust().keys.len();
                r.trust_mut().keys.retain(|k| k.id != id);
                match r.trust().keys.len() < before {
                    true => Ok(()),
                    false => bail!("no trusted key has the id {id} (`gymnos-host plugins trust list`)"),
                }
            })?;
            outln!("no longer trusting key {id}");
        }
        TrustCommand::Require { setting } => {
            let on = matches!(setting, OnOff::On);
            update(registry_path, |r| {
                r.trust_mut().require_signatures = on;
                Ok(())
            })?;
            outln!("signatures are {}", if on { "required" } else { "not required" });
        }
        TrustCommand::List { json } => {
            let registry = Registry::load(registry_path)?;
            let trust = registry.trust();
            if json {
                print_json(trust);
            } else {
                outln!("signatures {}required", if trust.require_signatures { "" } else { "not " });
                let cells: Vec<Vec<String>> = trust
                    .keys
                    .iter()
                    .map(|k: &TrustedKey| vec![k.id.clone(), k.public_key.clone(), k.comment.clone()])
                    .collect();
                if cells.is_empty() {
                    outln!("no trusted keys: add one with `gymnos-host plugins trust add KEY.pub`");
                } else {
                    print_table(&["ID", "PUBLIC KEY", "COMMENT"], &cells);
                }
            }
        }
    }
    Ok(())
}

pub fn channel(registry_path: &Path, command: ChannelCommand) -> Result<()> {
    match command {
        ChannelCommand::Add { channel } => {
            let named = Channel::parse(&channel).to_string();
            update(registry_path, |r| {
                if !r.channels().contains(&named) {
                    r.channels_mut().push(named.clone());
                }
                Ok(())
            })?;
            outln!("channel {named} added");
        }
        ChannelCommand::Remove { channel } => {
            let named = Channel::parse(&channel).to_string();
            update(registry_path, |r| {
                let before = r.channels().len();
                r.channels_mut().retain(|c| *c != named && *c != channel);
                match r.channels().len() < before {
                    true => Ok(()),
                    false => bail!("`{channel}` is not one of this registry's channels"),
                }
            })?;
            outln!("channel {named} removed");
        }
        ChannelCommand::List { json } => {
            let registry = Registry::load(registry_path)?;
            match json {
                true => print_json(&registry.channels()),
                false if registry.channels().is_empty() => {
                    outln!("no channels: add one with `gymnos-host plugins channel add DIR|URL`")
                }
                false => registry.channels().iter().for_each(|c| outln!("{c}")),
            }
        }
    }
    Ok(())
}

/// `plugins search [QUERY]`: what the channels offer, with whether this host can load it.
pub fn search(manager: &PluginManager, query: Option<&str>, given: &[String], json: bool) -> Result<()> {
    let host = HostLibtorch::cached();
    let mut rows = Vec::new();
    for channel in channels(given, &manager.registry)? {
        for entry in channel.index()?.packages {
            for c in &entry.components {
                if query.is_some_and(|q| !c.name.contains(q) && !entry.package.contains(q)) {
                    continue;
                }
                let why = entry.incompatibility(&manager.compat, host);
                rows.push((
                    c.name.clone(),
                    c.kind.clone(),
                    c.version.to_string(),
                    entry.clone(),
                    channel.to_string(),
                    why,
                ));
            }
        }
    }
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|(name, kind, version, entry, channel, why)| {
                json!({ "name": name, "kind": kind, "version": version, "package": entry.package, "file": entry.file,
                        "signed_by": entry.signed_by, "channel": channel, "incompatible": why })
            })
            .collect();
        print_json(&items);
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, kind, version, entry, channel, why)| {
            let signed = entry.signed_by.clone().unwrap_or_else(|| "-".into());
            let here = why.as_ref().map_or_else(|| "yes".to_string(), |w| format!("no: {w}"));
            vec![name.clone(), kind.clone(), version.clone(), signed, channel.clone(), here]
        })
        .collect();
    match cells.is_empty() {
        true => outln!("nothing found"),
        false => print_table(&["NAME", "KIND", "VERSION", "SIGNED", "CHANNEL", "LOADS HERE"], &cells),
    }
    Ok(())
}

/// An installed component and the newer version a channel offers.
struct Newer {
    kind: String,
    name: String,
    installed: semver::Version,
    available: semver::Version,
    channel: Channel,
    entry: IndexEntry,
}

/// Installed components that the channels have a newer version of, built for this host.
fn newer(manager: &PluginManager, given: &[String]) -> Result<Vec<Newer>> {
    let channels = channels(given, &manager.registry)?;
    let indexes: Vec<(Channel, package::channel::Index)> =
        channels.into_iter().map(|c| Ok((c.clone(), c.index()?))).collect::<Result<_>>()?;
    let host = HostLibtorch::cached();
    let mut latest: std::collections::BTreeMap<(String, String), semver::Version> = Default::default();
    for installed in manager.registry.installed() {
        let key = (installed.declared.kind.clone(), installed.declared.name.clone());
        let slot = latest.entry(key).or_insert_with(|| installed.declared.version.clone());
        if installed.declared.version > *slot {
            *slot = installed.declared.version.clone();
        }
    }
    let mut out = Vec::new();
    for ((kind, name), installed) in latest {
        let any = semver::VersionReq::STAR;
        let best = indexes.iter().find_map(|(channel, index)| {
            let found = candidates(index, &name, Some(&kind), &any, &manager.compat, host);
            found
                .into_iter()
                .find(|(_, _, why)| why.is_none())
                .map(|(e, c, _)| (channel.clone(), e.clone(), c.version.clone()))
        });
        if let Some((channel, entry, available)) = best.filter(|(_, _, v)| *v > installed) {
            out.push(Newer { kind, name, installed, available, channel, entry });
        }
    }
    Ok(out)
}

pub fn outdated(manager: &PluginManager, given: &[String], json: bool) -> Result<()> {
    let rows = newer(manager, given)?;
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|n| json!({ "kind": n.kind, "name": n.name, "installed": n.installed.to_string(),
                            "available": n.available.to_string(), "channel": n.channel.to_string(), "file": n.entry.file }))
            .collect();
        print_json(&items);
    } else if rows.is_empty() {
        outln!("every installed plugin is the newest the channels offer for this host");
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.kind.clone(),
                    n.installed.to_string(),
                    n.available.to_string(),
                    n.channel.to_string(),
                ]
            })
            .collect();
        print_table(&["NAME", "KIND", "INSTALLED", "AVAILABLE", "CHANNEL"], &cells);
    }
    Ok(())
}

/// `plugins upgrade [NAME]`: the newest compatible version of each outdated plugin (or NAME).
pub fn upgrade(manager: &mut PluginManager, name: Option<&str>, given: &[String]) -> Result<InstallReport> {
    let rows = newer(manager, given)?;
    let chosen: Vec<&Newer> = rows
        .iter()
        .filter(|n| {
            name.is_none_or(|w| gymnos_plugin_api::normalized_name(w) == gymnos_plugin_api::normalized_name(&n.name))
        })
        .collect();
    if let (Some(name), true) = (name, chosen.is_empty()) {
        if !manager
            .registry
            .installed()
            .any(|i| gymnos_plugin_api::normalized_name(&i.declared.name) == gymnos_plugin_api::normalized_name(name))
        {
            bail!("`{name}` is not installed (`gymnos-host plugins install {name} --channel C` installs it)");
        }
    }
    let mut report = InstallReport::default();
    for n in chosen {
        let reference: PluginRef = format!("{}@={}", n.name, n.available).parse()?;
        let kind = ComponentKind::parse(&n.kind);
        let done = manager.install_from_channels(&reference, kind, std::slice::from_ref(&n.channel), false)?;
        report.outcomes.extend(done.outcomes);
    }
    Ok(report)
}
