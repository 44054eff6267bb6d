//! `gymnos-host plugins ...`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gymnos_host::{
    builtin, outln,
    plugin_ref::find_installed,
    registry::{ComponentRecord, Installed, LibraryRecord, Registry, Status},
    InstallOutcome, InstallReport, PluginManager, PluginRef, ResolveError,
};
use gymnos_plugin_api::{normalized_name, ComponentKind};
use serde::Serialize;
use serde_json::json;

use super::{
    output::{print_json, print_table},
    packages,
};

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// Every installed plugin with its kind, version and whether it can be loaded.
    List {
        /// Only plugins of this kind (dataset, preprocessor, data_augmentor, model, tracker).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ComponentKind>,
        #[arg(long)]
        json: bool,
    },
    /// A plugin's metadata and the configuration keys it accepts.
    Info {
        /// NAME or NAME@VERSION_REQ (the highest matching loadable version is shown).
        plugin: String,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ComponentKind>,
        #[arg(long)]
        json: bool,
    },
    /// Install plugins: libraries, packages (.gplugin), folders walked for both, or NAME@REQ
    /// from a channel. Installing a library again restores its copy in the store when that copy
    /// is missing or changed. A library not installed before is first opened in a child process.
    Install {
        /// Files or folders; with --channel (or the registry's channels), NAME@REQ references.
        #[arg(required_unless_present = "builtins")]
        paths: Vec<PathBuf>,
        /// Look NAME@REQ up in this channel (a folder or an http(s) URL; repeatable).
        #[arg(long, value_name = "DIR|URL")]
        channel: Vec<String>,
        /// The kind, when a channel has plugins of several kinds by that name.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ComponentKind>,
        /// Install the built-in plugins, from the folder next to this binary.
        #[arg(long)]
        builtins: bool,
        /// Replace an installed component of the same name and version from another build.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove one installed version of a plugin.
    Remove {
        /// NAME@VERSION, an exact version.
        plugin: String,
        /// The kind, when plugins of several kinds share the name.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ComponentKind>,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the registry from the libraries under its plugin folders.
    Scan {
        #[arg(long)]
        json: bool,
    },
    /// Hash every installed library and compare it with what the registry recorded.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Create a registry (`DIR/registry.json` and its store) and install the built-in plugins.
    Init {
        /// The folder (default: the folder of the registry named by --registry,
        /// $GYMNOS_REGISTRY or ~/.local/share/gymnos).
        dir: Option<PathBuf>,
        /// Leave the new registry empty.
        #[arg(long)]
        no_builtins: bool,
        #[arg(long)]
        json: bool,
    },
    /// Pack a plugin library into one package file, NAME-VERSION-TARGET.gplugin: the library,
    /// its manifest (readable without loading it), its crate's README and licence, optionally
    /// signed.
    Pack {
        library: PathBuf,
        /// Sign the package with this minisign secret key (`plugins keygen` makes one).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// The folder to write the package into (default: the current one).
        #[arg(short = 'o', long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The crate whose README and licence go in (default: the crate the library was built
        /// in, when it is found above it).
        #[arg(long = "crate", value_name = "DIR")]
        crate_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Add a package to a channel folder; its index is rewritten atomically.
    Publish {
        package: PathBuf,
        #[arg(long, value_name = "DIR")]
        channel: String,
        #[arg(long)]
        json: bool,
    },
    /// Make an ed25519 key pair (minisign's format) to sign packages with.
    Keygen {
        /// The key files' name: NAME.key (secret) and NAME.pub.
        #[arg(long, default_value = "gymnos")]
        name: String,
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// The keys whose signatures this registry trusts, and whether it requires them.
    #[command(subcommand)]
    Trust(super::packages::TrustCommand),
    /// The channels this registry installs from.
    #[command(subcommand)]
    Channel(super::packages::ChannelCommand),
    /// What channels offer (NAME contains QUERY), and whether it loads here.
    Search {
        query: Option<String>,
        #[arg(long, value_name = "DIR|URL")]
        channel: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Installed plugins a channel has a newer version of, built for this host.
    Outdated {
        #[arg(long, value_name = "DIR|URL")]
        channel: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Install the newest version the channels offer of every outdated plugin, or of NAME.
    Upgrade {
        name: Option<String>,
        #[arg(long, value_name = "DIR|URL")]
        channel: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Opens a library here and prints what it says of itself (the safe first load's child).
    #[command(hide = true)]
    Probe { library: PathBuf },
    /// Create a standalone plugin crate with a working example component and its test.
    New {
        /// dataset, preprocessor, data_augmentor, model or tracker.
        #[arg(long, value_parser = parse_kind)]
        kind: ComponentKind,
        /// The plugin's name (lowercase letters, digits, `-`); also the crate's.
        name: String,
        /// Folder to create the crate in (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The gymnos source tree to build against (default: the one this host was built from).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
        /// A dataset read by index, a batch at a time, for data larger than memory (plugin
        /// API 1.2); without it, a dataset that loads everything at once.
        #[arg(long)]
        streaming: bool,
    },
}

fn parse_kind(s: &str) -> Result<ComponentKind, String> {
    ComponentKind::parse(s).ok_or_else(|| {
        let kinds: Vec<&str> = ComponentKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind `{s}` (kinds: {})", kinds.join(", "))
    })
}

/// One row of `plugins list`.
#[derive(Serialize)]
struct PluginRow<'a> {
    name: &'a str,
    kind: &'a str,
    version: String,
    package: &'a str,
    description: &'a str,
    status: String,
    loadable: bool,
    api_version: &'a str,
    libtorch_version: &'a str,
    library: String,
    sha256: &'a str,
    /// When `plugins verify` last found the library's hash right.
    verified_at: Option<&'a str>,
    /// The key id that signed the package it came from.
    signed_by: Option<&'a str>,
}

fn row<'a>(manager: &PluginManager, installed: Installed<'a>) -> PluginRow<'a> {
    let status = installed.status(&manager.registry, &manager.compat);
    let declared = installed.declared;
    let (library, component): (Option<&LibraryRecord>, Option<&ComponentRecord>) = match installed.found {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    PluginRow {
        name: &declared.name,
        kind: &declared.kind,
        version: declared.version.to_string(),
        package: &declared.package,
        description: component.map_or("", |c| c.description.as_str()),
        loadable: status == Status::Loadable,
        status: status.to_string(),
        api_version: library.map_or("", |l| l.api_version.as_str()),
        libtorch_version: library.map_or("", |l| l.libtorch_version.as_str()),
        library: library.map(|l| manager.registry.resolve(&l.path).display().to_string()).unwrap_or_default(),
        sha256: library.map_or("", |l| l.sha256.as_str()),
        verified_at: library.and_then(|l| l.verified_at.as_deref()),
        signed_by: library.and_then(|l| l.signed_by.as_deref()),
    }
}

pub fn run(registry_path: &Path, command: PluginsCommand) -> Result<()> {
    // Commands that need no registry.
    match command {
        PluginsCommand::Probe { library } => return packages::probe(&library),
        PluginsCommand::Pack { library, sign, out, crate_dir, json } => {
            return packages::pack(&library, sign.as_deref(), out.as_deref(), crate_dir.as_deref(), json)
        }
        PluginsCommand::Publish { package, channel, json } => return packages::publish(&package, &channel, json),
        PluginsCommand::Keygen { name, dir } => return packages::keygen(&dir, &name),
        PluginsCommand::Info { plugin, json, .. } if gymnos_host::package::is_package(Path::new(&plugin)) => {
            let registry = gymnos_host::Registry::load(registry_path).ok();
            return packages::info(registry.as_ref(), Path::new(&plugin), json);
        }
        PluginsCommand::Trust(command) => return packages::trust(registry_path, command),
        PluginsCommand::Channel(command) => return packages::channel(registry_path, command),
        _ => {}
    }
    let mut manager = PluginManager::open(registry_path)?.with_probe(gymnos_host::probe::Probe::of_this_binary()?);
    match command {
        PluginsCommand::List { kind, json } => list(&manager, kind, json),
        PluginsCommand::Info { plugin, kind, json } => info(&manager, &plugin, kind, json),
        PluginsCommand::Install { paths, channel, kind, builtins, replace, json } => {
            let mut report = InstallReport::default();
            if builtins {
                report = manager.install_builtins(&builtin::default_dir()?, replace)?;
            }
            // NAME@REQ from the channels: with --channel, or arguments that are no files when
            // the registry has channels.
            let from_channels =
                !channel.is_empty() || (!manager.registry.channels().is_empty() && paths.iter().all(|p| !p.exists()));
            let more = match (paths.is_empty(), from_channels) {
                (true, _) => InstallReport::default(),
                (false, true) => {
                    let channels = packages::channels(&channel, &manager.registry)?;
                    let mut all = InstallReport::default();
                    for reference in &paths {
                        let reference: PluginRef = reference.to_string_lossy().parse()?;
                        all.outcomes
                            .extend(manager.install_from_channels(&reference, kind, &channels, replace)?.outcomes);
                    }
                    all
                }
                (false, false) => manager.install(&paths, replace)?,
            };
            report.outcomes.extend(more.outcomes);
            report.skipped.extend(more.skipped);
            report.refused.extend(more.refused);
            report_install(&report, json);
            Ok(())
        }
        PluginsCommand::Search { query, channel, json } => packages::search(&manager, query.as_deref(), &channel, json),
        PluginsCommand::Outdated { channel, json } => packages::outdated(&manager, &channel, json),
        PluginsCommand::Upgrade { name, channel, json } => {
            let report = packages::upgrade(&mut manager, name.as_deref(), &channel)?;
            if report.outcomes.is_empty() && !json {
                outln!("nothing to upgrade");
            } else {
                report_install(&report, json);
            }
            Ok(())
        }
        PluginsCommand::Remove { plugin, kind, json } => {
            let Some((name, version)) = plugin.split_once('@') else {
                bail!("`{plugin}`: give the exact version to remove, as NAME@VERSION");
            };
            let version = semver::Version::parse(version)
                .with_context(|| format!("`{plugin}`: `{version}` is not an exact version"))?;
            let removed = manager.remove(name, &version, kind)?;
            if json {
                print_json(&json!({ "removed": removed }));
            } else {
                removed.iter().for_each(|r| outln!("removed {r}"));
            }
            Ok(())
        }
        PluginsCommand::New { kind, name, path, sdk, streaming } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(&name));
            let mut toolchain = gymnos_host::scaffold::Toolchain::of_this_build();
            if let Some(root) = sdk {
                toolchain.libtorch = root.join(".venv/libtorch");
                toolchain.source_root = root;
            }
            gymnos_host::scaffold::new_plugin(kind, streaming, &name, &dir, &toolchain)?;
            outln!("created the {kind} plugin `{name}` in {}", dir.display());
            outln!("  cd {} && cargo build --release && cargo test --release", dir.display());
            outln!("  gymnos-host plugins install {}/target/release/lib{}.so", dir.display(), name.replace('-', "_"));
            Ok(())
        }
        PluginsCommand::Scan { json } => {
            let report = manager.scan()?;
            if json {
                print_json(&json!({
                    "libraries": report.libraries,
                    "components": report.components,
                    "refused": report.refused,
                    "not_installed_here": report.unresolved,
                }));
            } else {
                outln!(
                    "{} libraries, {} components registered in {}",
                    report.libraries,
                    report.components,
                    manager.registry.path().display()
                );
                report.refused.iter().for_each(|r| outln!("refused: {r}"));
                report
                    .unresolved
                    .iter()
                    .for_each(|r| outln!("not installed here (install its library to restore it): {r}"));
            }
            Ok(())
        }
        PluginsCommand::Verify { json } => {
            let results = manager.verify()?;
            let bad = results.iter().filter(|r| r.status != "ok").count();
            if json {
                print_json(&results);
            } else {
                for r in &results {
                    let detail = r.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                    outln!("{:<8} {} ({}){detail}", r.status, r.library.display(), r.components.join(", "));
                }
            }
            if bad > 0 {
                bail!(
                    "{bad} of {} libraries do not match the registry; install them again to restore them",
                    results.len()
                );
            }
            Ok(())
        }
        PluginsCommand::Init { .. }
        | PluginsCommand::Probe { .. }
        | PluginsCommand::Pack { .. }
        | PluginsCommand::Publish { .. }
        | PluginsCommand::Keygen { .. }
        | PluginsCommand::Trust(_)
        | PluginsCommand::Channel(_) => unreachable!("answered before the registry is opened"),
    }
}

/// `plugins init`: a new registry, with the built-in plugins unless told otherwise.
pub fn init(path: &Path, no_builtins: bool, json: bool) -> Result<()> {
    let registry = Registry::init(path)?;
    let mut manager = PluginManager::new(registry, gymnos_host::HostCompat::default());
    let report = if no_builtins {
        InstallReport::default()
    } else {
        manager.install_builtins(&builtin::default_dir()?, false)?
    };
    if json {
        print_json(&json!({ "registry": path, "installed": report.outcomes.len() }));
    } else {
        outln!("created the registry {} ({} plugins installed)", path.display(), report.outcomes.len());
        outln!("  use it with --registry {} or GYMNOS_REGISTRY={}", path.display(), path.display());
    }
    Ok(())
}

fn sorted_rows(manager: &PluginManager, kind: Option<ComponentKind>) -> Vec<PluginRow<'_>> {
    let mut installed: Vec<Installed<'_>> =
        manager.registry.installed().filter(|i| kind.is_none() || i.declared.kind() == kind).collect();
    installed.sort_by(|a, b| {
        let key = |i: &Installed<'_>| (i.declared.kind(), i.declared.name.clone(), i.declared.version.clone());
        key(a).cmp(&key(b))
    });
    installed.into_iter().map(|i| row(manager, i)).collect()
}

fn list(manager: &PluginManager, kind: Option<ComponentKind>, json: bool) -> Result<()> {
    let rows = sorted_rows(manager, kind);
    if json {
        print_json(&rows);
    } else if rows.is_empty() {
        outln!("no plugins installed in {}", manager.registry.path().display());
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let verified =
                    r.verified_at.map_or_else(|| "never".to_string(), |t| t.get(..10).unwrap_or(t).to_string());
                vec![
                    r.name.to_string(),
                    r.kind.to_string(),
                    r.version.clone(),
                    r.api_version.to_string(),
                    verified,
                    r.signed_by.unwrap_or("-").to_string(),
                    r.status.clone(),
                ]
            })
            .collect();
        print_table(&["NAME", "KIND", "VERSION", "API", "VERIFIED", "SIGNED", "STATUS"], &cells);
    }
    Ok(())
}

fn info(manager: &PluginManager, plugin: &str, kind: Option<ComponentKind>, json: bool) -> Result<()> {
    let reference: PluginRef = plugin.parse()?;
    let chosen = match find_installed(&manager.registry, &manager.compat, kind, &reference) {
        Ok((library, component)) => manager
            .registry
            .installed()
            .find(|i| i.found.is_some_and(|(l, c)| std::ptr::eq(l, library) && std::ptr::eq(c, component))),
        // Not loadable now: show what the registry recorded of the best match, and why.
        Err(ResolveError::NotLoadable { .. }) => manager
            .registry
            .installed()
            .filter(|i| kind.is_none() || i.declared.kind() == kind)
            .filter(|i| normalized_name(&i.declared.name) == normalized_name(&reference.name))
            .filter(|i| reference.req.matches(&i.declared.version))
            .max_by(|a, b| a.declared.version.cmp(&b.declared.version)),
        Err(e) => return Err(e.into()),
    };
    let installed = chosen.expect("resolution found it");
    let declared = installed.declared;
    let other_versions: Vec<String> = manager
        .registry
        .installed()
        .filter(|i| {
            i.declared.name == declared.name
                && i.declared.kind == declared.kind
                && i.declared.version != declared.version
        })
        .map(|i| i.declared.version.to_string())
        .collect();
    let row = row(manager, installed);
    let (library, component) = match installed.found {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    if json {
        print_json(&json!({
            "plugin": row,
            "package": declared.package,
            "package_version": library.map(|l| &l.package_version),
            "config": component.map(|c| &c.config),
            "other_versions": other_versions,
        }));
        return Ok(());
    }
    outln!("{} {} ({})", declared.name, declared.version, declared.kind);
    if let Some(c) = component {
        outln!("  {}", c.description);
    }
    match library {
        Some(l) => {
            outln!("  library:   {} ({} {})", row.library, l.package, l.package_version);
            outln!("  sha256:    {}", l.sha256);
            outln!("  built for: plugin API {}, libtorch {}", l.api_version, l.libtorch_version);
            outln!("  verified:  {}", l.verified_at.as_deref().unwrap_or("never (`gymnos-host plugins verify`)"));
        }
        None => outln!("  package:   {}", declared.package),
    }
    outln!("  status:    {}", row.status);
    if !other_versions.is_empty() {
        outln!("  also installed: {}", other_versions.join(", "));
    }
    let Some(component) = component else { return Ok(()) };
    if component.config.is_empty() {
        outln!("\nconfiguration: none");
    } else {
        outln!("\nconfiguration:");
        let cells: Vec<Vec<String>> = component
            .config
            .iter()
            .map(|k| {
                let default = k.default.as_ref().map_or_else(|| "(required)".to_string(), |d| d.to_string());
                let rules: Vec<String> = k.rules.iter().map(|r| r.describe()).collect();
                vec![k.name.clone(), k.ty.clone(), default, rules.join("; "), k.description.clone()]
            })
            .collect();
        print_table(&["KEY", "TYPE", "DEFAULT", "RULES", "DESCRIPTION"], &cells);
    }
    Ok(())
}

fn report_install(report: &InstallReport, json: bool) {
    if json {
        let items: Vec<_> = report
            .outcomes
            .iter()
            .map(|o| match o {
                InstallOutcome::Installed { source, stored, components } => json!({
                    "source": source, "stored": stored, "components": components, "status": "installed"
                }),
                InstallOutcome::Restored { source, stored, components } => json!({
                    "source": source, "stored": stored, "components": components, "status": "restored"
                }),
                InstallOutcome::AlreadyInstalled { source, components } => json!({
                    "source": source, "components": components, "status": "already installed"
                }),
            })
            .collect();
        print_json(&json!({ "installed": items, "skipped": report.skipped, "refused": report.refused }));
        return;
    }
    for outcome in &report.outcomes {
        match outcome {
            InstallOutcome::Installed { source, components, .. } => {
                outln!("installed {} from {}", components.join(", "), source.display())
            }
            InstallOutcome::Restored { source, components, .. } => {
                outln!(
                    "restored {} from {} (its copy in the store was missing or changed)",
                    components.join(", "),
                    source.display()
                )
            }
            InstallOutcome::AlreadyInstalled { source, components } => {
                outln!("already installed: {} ({})", components.join(", "), source.display())
            }
        }
    }
    for skipped in &report.skipped {
        outln!("skipped (not a gymnos plugin): {}", skipped.display());
    }
    for refused in &report.refused {
        outln!("refused: {refused}");
    }
}
