//! `gymnos-host plugins ...`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gymnos_host::{
    registry::{ComponentRecord, LibraryRecord},
    resolve::resolve,
    InstallOutcome, PluginManager, PluginRef,
};
use gymnos_plugin_api::ComponentKind;
use serde::Serialize;
use serde_json::json;

use super::output::{print_json, print_table};

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
    /// Install plugin libraries: files, or folders walked for libraries.
    Install {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
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
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the registry from the libraries under its plugin folders.
    Scan {
        #[arg(long)]
        json: bool,
    },
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
    description: &'a str,
    status: String,
    loadable: bool,
    api_version: &'a str,
    libtorch_version: &'a str,
    library: String,
    sha256: &'a str,
}

fn row<'a>(manager: &PluginManager, library: &'a LibraryRecord, component: &'a ComponentRecord) -> PluginRow<'a> {
    let status = library.status(&manager.registry, &manager.compat);
    PluginRow {
        name: &component.name,
        kind: &component.kind,
        version: component.version.to_string(),
        description: &component.description,
        loadable: status == gymnos_host::registry::Status::Loadable,
        status: status.to_string(),
        api_version: &library.api_version,
        libtorch_version: &library.libtorch_version,
        library: manager.registry.resolve(&library.path).display().to_string(),
        sha256: &library.sha256,
    }
}

pub fn run(registry_path: &Path, command: PluginsCommand) -> Result<()> {
    let mut manager = PluginManager::open(registry_path)?;
    match command {
        PluginsCommand::List { kind, json } => list(&manager, kind, json),
        PluginsCommand::Info { plugin, kind, json } => info(&manager, &plugin, kind, json),
        PluginsCommand::Install { paths, replace, json } => {
            let outcomes = manager.install(&paths, replace)?;
            report_install(&outcomes, json);
            Ok(())
        }
        PluginsCommand::Remove { plugin, json } => {
            let Some((name, version)) = plugin.split_once('@') else {
                bail!("`{plugin}`: give the exact version to remove, as NAME@VERSION");
            };
            let version = semver::Version::parse(version)
                .with_context(|| format!("`{plugin}`: `{version}` is not an exact version"))?;
            let removed = manager.remove(name, &version)?;
            if json {
                print_json(&json!({ "removed": removed }));
            } else {
                removed.iter().for_each(|r| println!("removed {r}"));
            }
            Ok(())
        }
        PluginsCommand::New { kind, name, path, sdk } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(&name));
            let mut toolchain = gymnos_host::scaffold::Toolchain::of_this_build();
            if let Some(root) = sdk {
                toolchain.libtorch = root.join(".venv/libtorch");
                toolchain.source_root = root;
            }
            gymnos_host::scaffold::new_plugin(kind, &name, &dir, &toolchain)?;
            println!("created the {kind} plugin `{name}` in {}", dir.display());
            println!("  cd {} && cargo build --release && cargo test --release", dir.display());
            println!("  gymnos-host plugins install {}/target/release/lib{}.so", dir.display(), name.replace('-', "_"));
            Ok(())
        }
        PluginsCommand::Scan { json } => {
            let report = manager.scan()?;
            for refusal in &report.refused {
                tracing::warn!("refused: {refusal}");
            }
            if json {
                print_json(&json!({
                    "libraries": report.libraries,
                    "components": report.components,
                    "refused": report.refused,
                }));
            } else {
                println!("{} libraries, {} components registered in {}", report.libraries, report.components, manager.registry.path().display());
                report.refused.iter().for_each(|r| println!("refused: {r}"));
            }
            Ok(())
        }
    }
}

fn sorted_rows<'a>(manager: &'a PluginManager, kind: Option<ComponentKind>) -> Vec<PluginRow<'a>> {
    let mut components: Vec<(&LibraryRecord, &ComponentRecord)> =
        manager.registry.components().filter(|(_, c)| kind.is_none() || c.kind() == kind).collect();
    components.sort_by(|(_, a), (_, b)| (a.kind(), &a.name, &a.version).cmp(&(b.kind(), &b.name, &b.version)));
    components.into_iter().map(|(l, c)| row(manager, l, c)).collect()
}

fn list(manager: &PluginManager, kind: Option<ComponentKind>, json: bool) -> Result<()> {
    let rows = sorted_rows(manager, kind);
    if json {
        print_json(&rows);
    } else if rows.is_empty() {
        println!("no plugins installed in {}", manager.registry.path().display());
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| vec![r.name.to_string(), r.kind.to_string(), r.version.clone(), r.api_version.to_string(), r.status.clone()])
            .collect();
        print_table(&["NAME", "KIND", "VERSION", "API", "STATUS"], &cells);
    }
    Ok(())
}

fn info(manager: &PluginManager, plugin: &str, kind: Option<ComponentKind>, json: bool) -> Result<()> {
    let reference: PluginRef = plugin.parse()?;
    let (library, component) = resolve(&manager.registry, &manager.compat, kind, &reference)?;
    let other_versions: Vec<String> = manager
        .registry
        .components()
        .filter(|(_, c)| c.name == component.name && c.kind == component.kind && c.version != component.version)
        .map(|(_, c)| c.version.to_string())
        .collect();
    let row = row(manager, library, component);
    if json {
        print_json(&json!({
            "plugin": row,
            "package": library.package,
            "package_version": library.package_version,
            "config": component.config,
            "other_versions": other_versions,
        }));
        return Ok(());
    }
    println!("{} {} ({})", component.name, component.version, component.kind);
    println!("  {}", component.description);
    println!("  library:   {} ({} {})", row.library, library.package, library.package_version);
    println!("  sha256:    {}", library.sha256);
    println!("  built for: plugin API {}, libtorch {}", library.api_version, library.libtorch_version);
    println!("  status:    {}", row.status);
    if !other_versions.is_empty() {
        println!("  also installed: {}", other_versions.join(", "));
    }
    if component.config.is_empty() {
        println!("\nconfiguration: none");
    } else {
        println!("\nconfiguration:");
        let cells: Vec<Vec<String>> = component
            .config
            .iter()
            .map(|k| {
                let default = k.default.as_ref().map_or_else(|| "(required)".to_string(), |d| d.to_string());
                vec![k.name.clone(), k.ty.clone(), default, k.description.clone()]
            })
            .collect();
        print_table(&["KEY", "TYPE", "DEFAULT", "DESCRIPTION"], &cells);
    }
    Ok(())
}

fn report_install(outcomes: &[InstallOutcome], json: bool) {
    if json {
        let items: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                InstallOutcome::Installed { source, stored, components } => json!({
                    "source": source, "stored": stored, "components": components, "status": "installed"
                }),
                InstallOutcome::AlreadyInstalled { source, components } => json!({
                    "source": source, "components": components, "status": "already installed"
                }),
            })
            .collect();
        print_json(&items);
        return;
    }
    for outcome in outcomes {
        match outcome {
            InstallOutcome::Installed { source, components, .. } => {
                println!("installed {} from {}", components.join(", "), source.display())
            }
            InstallOutcome::AlreadyInstalled { source, components } => {
                println!("already installed: {} ({})", components.join(", "), source.display())
            }
        }
    }
}
