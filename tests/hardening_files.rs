//! The host's own files and arguments, broken as people and tools break them: JSON with a
//! byte order mark, registries with a wrong entry, `--set` paths and values, paths that are not
//! UTF-8, run folders moved or missing their model, and `predict` inputs that are no finite
//! numbers. Each refusal is one line naming the file and the field or entry, with a non-zero
//! exit, and leaves nothing written.

use std::{
    ffi::OsStr,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use gymnos_tests::{data_dir, wine_experiment, Run, Sandbox};
use serde_json::{json, Value};

const BOM: &str = "\u{feff}";

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The wine experiment, one epoch.
fn wine(name: &str) -> Value {
    let mut exp = wine_experiment(name);
    exp["training"]["epochs"] = json!(1);
    exp
}

/// Puts a byte order mark before the file's text.
fn add_bom(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    fs::write(path, format!("{BOM}{text}")).unwrap();
}

/// A sandbox with the built-ins and one completed wine run; returns the run folder.
fn with_a_run(name: &str) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let exp = sandbox.experiment(name, &wine(name));
    sandbox.host(&["run", s(&exp), "--no-progress"]).ok();
    let run = sandbox.runs(name).pop().expect("a run folder");
    (sandbox, run)
}

fn runs_json(sandbox: &Sandbox, root: &Path) -> Vec<Value> {
    let out = sandbox.host(&["runs", "list", "--json", "--root", s(root)]);
    serde_json::from_str::<Vec<Value>>(out.ok()).expect("runs list --json is a JSON array")
}

#[test]
fn json_files_with_a_byte_order_mark_are_read_everywhere() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    add_bom(&sandbox.registry());
    add_bom(&sandbox.dir.path().join("plugin-store/state.json"));
    let exp = sandbox.experiment("bom", &wine("bom"));
    add_bom(&exp);

    sandbox.host(&["plugins", "list"]).ok();
    sandbox.host(&["validate", s(&exp)]).ok();
    // A list index in brackets, as problems name places.
    sandbox.host(&["run", s(&exp), "--no-progress", "--set", "preprocessors[0].config.per_feature=false"]).ok();
    let run = sandbox.runs("bom").pop().expect("a run folder");
    let config: Value = serde_json::from_str(&fs::read_to_string(run.join("training_config.json")).unwrap()).unwrap();
    assert_eq!(config["preprocessors"][0]["config"]["per_feature"], json!(false));

    // The run's records with a byte order mark: listed, shown, predicted from, not resumed.
    add_bom(&run.join("training_config.json"));
    add_bom(&run.join("metrics.json"));
    let rows = runs_json(&sandbox, &sandbox.dir.path().join("trainings"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "completed", "{rows:?}");
    assert_eq!(rows[0]["experiment"], "bom");
    sandbox.host(&["runs", "show", s(&run)]).ok();
    let input = data_dir().join("sklearn/wine_data.csv");
    let predictions: Value = serde_json::from_str(sandbox.host(&["predict", s(&run), s(&input)]).ok()).unwrap();
    assert_eq!(predictions.as_array().unwrap().len(), 178);
    let err = sandbox.host(&["resume", s(&run)]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: this run already completed; nothing to resume", run.display()));
}

/// (case, a change to the registry's declaration that returns the error it must get after
/// `error: <file>: the registry is not valid: `, serde's position left out).
type RegistryCase = (&'static str, fn(&mut Value) -> String);

const NAME_RULE: &str =
    "is not a component name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter";

fn rename(d: &mut Value, name: &str) -> String {
    d["components"][4]["name"] = json!(name);
    format!("components[4].name: `{name}` {NAME_RULE}")
}

#[test]
fn a_registry_with_a_wrong_entry_is_refused_naming_the_entry() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let exp = sandbox.experiment("wine", &wine("wine"));
    let good = fs::read_to_string(sandbox.registry()).unwrap();
    let declaration: Value = serde_json::from_str(&good).unwrap();
    let cases: Vec<RegistryCase> = vec![
        ("a version that is no semver", |d| {
            d["components"][4]["version"] = json!("not-a-version");
            "components[4].version: unexpected character 'n' while parsing major version number".into()
        }),
        ("an unknown kind", |d| {
            d["components"][4]["kind"] = json!("gizmo");
            "components[4].kind: `gizmo` is not a component kind (one of: dataset, preprocessor, data_augmentor, model, tracker)".into()
        }),
        ("a missing name", |d| {
            d["components"][4].as_object_mut().unwrap().remove("name");
            "components[4]: missing field `name`".into()
        }),
        ("an empty name", |d| rename(d, "")),
        ("a name that is a path", |d| rename(d, "../../etc/passwd")),
        ("a name with a separator", |d| rename(d, "a/b")),
        ("a name `..`", |d| rename(d, "..")),
        ("an upper-case name", |d| rename(d, "Flatten")),
        ("a name with a newline", |d| {
            d["components"][4]["name"] = json!("a\nb");
            format!("components[4].name: `a\\nb` {NAME_RULE}")
        }),
        ("a null entry", |d| {
            d["components"][4] = Value::Null;
            "components[4]: invalid type: null, expected an object".into()
        }),
        ("an entry that is a number", |d| {
            d["components"][4] = json!(7);
            "components[4]: invalid type: integer `7`, expected an object".into()
        }),
        ("the components as an object", |d| {
            d["components"] = json!({});
            "components: invalid type: map, expected a sequence".into()
        }),
        ("an entry declared twice", |d| {
            let list = d["components"].as_array_mut().unwrap();
            list.push(list[0].clone());
            let (c, n) = (&list[0], list.len() - 1);
            format!(
                "components[{n}]: {} {}@{} is declared twice (also components[0])",
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        }),
        ("the registry as a list", |d| {
            *d = json!([]);
            "expected an object, found an array".into()
        }),
        ("a format that is no number", |d| {
            d["format"] = json!("2");
            "format: expected a whole number, found \"2\"".into()
        }),
    ];
    let mut wrong = Vec::new();
    for (case, change) in cases {
        let mut broken = declaration.clone();
        let expected = change(&mut broken);
        let text = serde_json::to_string_pretty(&broken).unwrap();
        fs::write(sandbox.registry(), &text).unwrap();
        let want = format!("error: {}: the registry is not valid: {expected}", sandbox.registry().display());
        for args in [vec!["plugins", "list"], vec!["validate", s(&exp)], vec!["plugins", "install", "--builtins"]] {
            let out = sandbox.host(&args);
            let got = if out.code == 0 { "(succeeded)".to_string() } else { out.one_line_error().to_string() };
            if got != want && !got.starts_with(&format!("{want} at line ")) {
                wrong.push(format!("{case} ({}):\n  want {want}\n  got  {got}", args.join(" ")));
            }
            assert_eq!(fs::read_to_string(sandbox.registry()).unwrap(), text, "{case}: the registry was changed");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A wrong entry in this machine's state is named in the state's file.
    fs::write(sandbox.registry(), &good).unwrap();
    let state_path = sandbox.dir.path().join("plugin-store/state.json");
    let mut state: Value = serde_json::from_str(&fs::read_to_string(&state_path).unwrap()).unwrap();
    state["libraries"][0]["components"][0]["kind"] = json!("gizmo");
    fs::write(&state_path, state.to_string()).unwrap();
    let err = sandbox.host(&["plugins", "list"]).one_line_error().to_string();
    assert_eq!(
        err,
        format!(
            "error: {}: the registry is not valid: libraries[0].components[0].kind: `gizmo` is not a component kind \
             (one of: dataset, preprocessor, data_augmentor, model, tracker)",
            state_path.display()
        )
    );
}

#[test]
fn set_takes_bracketed_indices_and_refuses_json_that_does_not_parse() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let exp = sandbox.experiment("wine", &wine("wine"));
    for set in ["preprocessors[0].config.per_feature=false", "model.config.hidden=[8, 4]", "experiment.name=\"[x\""] {
        sandbox.host(&["validate", s(&exp), "--set", set]).ok();
    }
    let hint = "(a text starting with `[`, `{` or `\"` is given as a JSON string)";
    let cases: Vec<(&str, String)> = vec![
        (
            "model.config.hidden=[32,]",
            format!("the value `[32,]` is not valid JSON: trailing comma at column 5 {hint}"),
        ),
        (
            "model.config.hidden={\"a\":",
            format!("the value `{{\"a\":` is not valid JSON: EOF while parsing a value at column 5 {hint}"),
        ),
        (
            "model.config.hidden=[32 16]",
            format!("the value `[32 16]` is not valid JSON: expected `,` or `]` at column 5 {hint}"),
        ),
        (
            "experiment.name=\"x",
            format!("the value `\"x` is not valid JSON: EOF while parsing a string at column 2 {hint}"),
        ),
        (
            "training.optimizer.lr=1e400",
            "the value `1e400` is a number too large for a double (the largest is about 1.8e308)".into(),
        ),
        (
            "preprocessors[x].config.per_feature=false",
            "`preprocessors[x].config.per_feature`: `[x]` is not a list index (a number, as in `preprocessors[0]`)"
                .into(),
        ),
        (
            "preprocessors[0.config.per_feature=false",
            "`preprocessors[0.config.per_feature`: `[` without its `]`".into(),
        ),
        ("preprocessors[3].config.per_feature=false", "`preprocessors[3]`: index 3 is past the end (length 1)".into()),
        (
            "preprocessors.first.config=1",
            "`preprocessors.first`: `preprocessors` is a list; index it with a number, as in `preprocessors[0]`".into(),
        ),
        (
            "training..epochs=1",
            "`training..epochs`: an empty name (write `a.b.c`, with list indices as `a[0]` or `a.0`)".into(),
        ),
    ];
    let mut wrong = Vec::new();
    for (set, expected) in cases {
        for command in ["validate", "run"] {
            let out = sandbox
                .host(&[command, s(&exp), "--set", set, "--no-progress"][..if command == "run" { 5 } else { 4 }]);
            let got = if out.code == 0 { "(succeeded)".to_string() } else { out.one_line_error().to_string() };
            let want = format!("error: --set {set}: {expected}");
            if got != want {
                wrong.push(format!("{set} ({command}):\n  want {want}\n  got  {got}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(sandbox.runs("wine").is_empty(), "a refused run left a folder");
}

fn not_utf8(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

#[test]
fn paths_that_are_not_utf8_are_refused_before_anything_is_written() {
    let (sandbox, run) = with_a_run("wine");
    let dir = sandbox.dir.path();
    let exp = dir.join("wine.json");
    let input = data_dir().join("sklearn/wine_data.csv");
    let err_of = |args: &[&OsStr], cwd: &Path| {
        let mut command = sandbox.command(&[]);
        command.args(args).current_dir(cwd);
        Run::of(command.output().unwrap()).one_line_error().to_string()
    };
    let os = |s: &'static str| OsStr::new(s);

    let root = not_utf8(dir, b"runs-\xff");
    let err = err_of(&[os("run"), exp.as_os_str(), os("--no-progress"), os("--output-root"), root.as_os_str()], dir);
    assert_eq!(
        err,
        format!(
            "error: --output-root <DIR>: {:?} is not UTF-8 text, which the run's records (UTF-8 JSON) cannot name; use a UTF-8 name",
            root.as_os_str()
        )
    );
    let bad_exp = not_utf8(dir, b"exp-\xfe.json");
    fs::copy(&exp, &bad_exp).unwrap();
    for command in ["validate", "run"] {
        let err = err_of(&[os(command), bad_exp.as_os_str()], dir);
        assert!(err.starts_with(&format!("error: <FILE>: {:?} is not UTF-8 text", bad_exp.as_os_str())), "{err}");
    }
    let output = not_utf8(dir, b"out-\xff.json");
    let err = err_of(&[os("predict"), run.as_os_str(), input.as_os_str(), os("--output"), output.as_os_str()], dir);
    assert!(err.starts_with("error: --output <OUTPUT>: "), "{err}");
    let moved = not_utf8(dir, b"run-\xff");
    fs::create_dir_all(&moved).unwrap();
    for command in ["resume", "predict"] {
        let err = err_of(
            &[os(command), moved.as_os_str(), input.as_os_str()][..if command == "resume" { 2 } else { 3 }],
            dir,
        );
        assert!(err.starts_with(&format!("error: <RUN_DIR>: {:?} is not UTF-8 text", moved.as_os_str())), "{err}");
    }
    // A relative path in a current folder whose name is not UTF-8.
    let cwd = not_utf8(dir, b"cwd-\xff");
    fs::create_dir_all(&cwd).unwrap();
    fs::copy(&exp, cwd.join("wine.json")).unwrap();
    let err = err_of(&[os("run"), os("wine.json"), os("--no-progress")], &cwd);
    assert!(err.starts_with("error: <FILE>: ") && err.contains("is not UTF-8 text once made absolute"), "{err}");
    // `runs list` reads, but its rows (and --json) name folders in UTF-8.
    let err = err_of(&[os("runs"), os("list"), os("--root"), moved.as_os_str()], dir);
    assert!(err.contains("the path is not UTF-8 text"), "{err}");

    // Nothing was written: no run folder under any of those names, nor under a lossy one.
    assert_eq!(sandbox.runs("wine").len(), 1);
    let names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with("runs-")), "{names:?}");
    assert!(fs::read_dir(&cwd).unwrap().count() == 1, "something was written in the current folder");
    assert!(!dir.join("out-\u{fffd}.json").exists() && !output.exists());
}

#[test]
fn run_folders_out_of_their_place_are_listed_and_a_missing_model_is_named() {
    let (sandbox, run) = with_a_run("wine");
    let copies = sandbox.dir.path().join("copies");
    let copy = |name: &str| {
        let to = copies.join(name);
        fs::create_dir_all(to.join("checkpoints")).unwrap();
        for entry in fs::read_dir(&run).unwrap().chain(fs::read_dir(run.join("checkpoints")).unwrap()) {
            let from = entry.unwrap().path();
            if from.is_file() {
                let rel = from.strip_prefix(&run).unwrap();
                fs::copy(&from, to.join(rel)).unwrap();
            }
        }
        to
    };
    let (first, second, third) = (copy("first"), copy("second"), copy("third"));

    // Run folders that are direct children of --root, and --root itself a run.
    let rows = runs_json(&sandbox, &copies);
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [s(&first), s(&second), s(&third)], "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "completed" && r["experiment"] == "wine"), "{rows:?}");
    assert_eq!(runs_json(&sandbox, &first).len(), 1);

    let input = data_dir().join("sklearn/wine_data.csv");
    let predict_err = |dir: &Path, best: bool| {
        let mut args = vec!["predict", s(dir), s(&input)];
        if best {
            args.push("--best");
        }
        sandbox.host(&args).one_line_error().to_string()
    };
    // A completed run whose model file is gone.
    fs::remove_file(first.join("model.safetensors")).unwrap();
    assert_eq!(
        predict_err(&first, false),
        format!(
            "error: {}: missing, though the run completed: the file was deleted or moved",
            first.join("model.safetensors").display()
        )
    );
    fs::remove_file(first.join("checkpoints/best.safetensors")).unwrap();
    assert_eq!(
        predict_err(&first, true),
        format!(
            "error: {}: missing, though the run completed: the file was deleted or moved",
            first.join("checkpoints/best.safetensors").display()
        )
    );
    // A run that has not completed has no model yet.
    let metrics = second.join("metrics.json");
    let text = fs::read_to_string(&metrics).unwrap().replace("\"completed\"", "\"interrupted\"");
    fs::write(&metrics, text).unwrap();
    fs::remove_file(second.join("model.safetensors")).unwrap();
    assert_eq!(
        predict_err(&second, false),
        format!(
            "error: {}: missing; the run has not completed (it is interrupted)",
            second.join("model.safetensors").display()
        )
    );
    // Neither model nor a readable record.
    fs::write(third.join("metrics.json"), "{ \"status\": ").unwrap();
    fs::remove_file(third.join("model.safetensors")).unwrap();
    let err = predict_err(&third, false);
    assert!(
        err.starts_with(&format!(
            "error: {}: missing, and the run's record cannot be read: {}: not a valid run record: ",
            third.join("model.safetensors").display(),
            third.join("metrics.json").display()
        )),
        "{err}"
    );
    // The damaged copy is listed, unreadable, beside the others.
    let rows = runs_json(&sandbox, &copies);
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "interrupted", "unreadable"], "{rows:?}");
}

#[test]
fn predict_refuses_inputs_that_are_no_finite_numbers_naming_line_and_column() {
    let (sandbox, run) = with_a_run("wine");
    let wine_csv = fs::read_to_string(data_dir().join("sklearn/wine_data.csv")).unwrap();
    let lines: Vec<&str> = wine_csv.lines().take(6).collect();
    // (cell, line, column): the header is line 1.
    let cases = [("nan", 3, 1), ("inf", 2, 4), ("-inf", 5, 13), ("1e400", 4, 2), ("NaN", 6, 7), ("-Infinity", 2, 1)];
    let mut wrong = Vec::new();
    for (i, (cell, line, column)) in cases.into_iter().enumerate() {
        let mut rows: Vec<Vec<String>> = lines.iter().map(|l| l.split(',').map(str::to_string).collect()).collect();
        rows[line - 1][column - 1] = cell.to_string();
        let text: Vec<String> = rows.iter().map(|r| r.join(",")).collect();
        let input = sandbox.dir.path().join(format!("input-{i}.csv"));
        fs::write(&input, text.join("\n") + "\n").unwrap();
        let output = sandbox.dir.path().join(format!("predictions-{i}.json"));
        let out = sandbox.host(&["predict", s(&run), s(&input), "--output", s(&output)]);
        let got = if out.code == 0 { "(succeeded)".to_string() } else { out.one_line_error().to_string() };
        // The csv plugin refuses such a cell itself (`<file> line 3: column 1 (…) is `nan`, not a
        // finite number`), or predict does (`<file>: line 3, column 1: `nan` is not a finite
        // number`): either names the file, the line, the column and the cell.
        let names_all = got.contains(&input.display().to_string())
            && got.contains(&format!("line {line}"))
            && got.contains(&format!("column {column}"))
            && got.contains(&format!("`{cell}`"))
            && got.contains("not a finite number");
        if !names_all {
            wrong.push(format!("{cell} at line {line}, column {column}: {got}"));
        }
        assert!(!output.exists(), "predictions were written for {cell}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
