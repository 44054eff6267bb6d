//! The model plugins `linear`, `resnet` and `sequential`, end to end: each trains briefly on
//! small real data (the wine table; the first 2000 Fashion-MNIST test images), and what they
//! cannot take is refused by `validate --deep` before any run, with the layer and the shapes.

use gymnos_tests::{data_dir, library, read_json, wine_experiment, Sandbox};
use serde_json::{json, Value};

const MODEL_CRATES: [&str; 3] = ["gymnos-linear", "gymnos-resnet", "gymnos-sequential"];

/// A sandbox with the built-ins and the three model plugins.
fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let libraries: Vec<String> = MODEL_CRATES.iter().map(|c| library(c).to_string_lossy().into_owned()).collect();
    let mut args = vec!["plugins", "install"];
    args.extend(libraries.iter().map(String::as_str));
    sandbox.host(&args).ok();
    sandbox
}

fn wine(name: &str, model: Value) -> Value {
    let mut experiment = wine_experiment(name);
    experiment["model"] = model;
    experiment["training"]["epochs"] = json!(10);
    experiment.as_object_mut().unwrap().remove("tracking");
    experiment
}

/// The first 2000 Fashion-MNIST test images: [1, 28, 28], 10 classes.
fn fashion(name: &str, model: Value) -> Value {
    json!({
        "experiment": { "name": name, "seed": 11 },
        "dataset": {
            "plugin": "idx",
            "config": {
                "path": data_dir().join("fashion-mnist"),
                "train_images": "t10k-images-idx3-ubyte.gz", "train_labels": "t10k-labels-idx1-ubyte.gz",
                "test_images": "", "limit": 2000
            },
            "split": { "train": 0.8, "val": 0.1, "test": 0.1 }
        },
        "preprocessors": [{ "plugin": "standardize" }],
        "model": model,
        "training": {
            "epochs": 2, "batch_size": 32, "device": "cpu",
            "optimizer": { "name": "adam", "lr": 0.005 }
        }
    })
}

/// Runs `experiment` (with `training.epochs` set to `epochs`) and returns its metrics.json.
fn train(sandbox: &Sandbox, name: &str, experiment: &Value, epochs: u32) -> Value {
    let path = sandbox.experiment(name, experiment);
    let epochs = format!("training.epochs={epochs}");
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress", "--set", &epochs]).ok();
    let runs = sandbox.runs(name);
    assert_eq!(runs.len(), 1, "{name}");
    read_json(&runs[0].join("metrics.json"))
}

/// The training loss went down, and the test accuracy is above `floor`.
fn assert_learned(metrics: &Value, floor: f64) {
    assert_eq!(metrics["status"], "completed", "{metrics}");
    let losses: Vec<f64> =
        metrics["history"]["train_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses.last() < losses.first(), "the loss did not decrease: {losses:?}");
    let accuracy = metrics["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > floor, "test accuracy {accuracy} <= {floor}: {}", metrics["test"]);
}

/// `validate --deep`'s one error line for `experiment`, without its `error: <file>: ` prefix.
fn deep_error(sandbox: &Sandbox, name: &str, experiment: &Value) -> String {
    let path = sandbox.experiment(name, experiment);
    let err = sandbox.host(&["validate", "--deep", path.to_str().unwrap()]).one_line_error().to_string();
    assert!(sandbox.runs(name).is_empty(), "validate writes no run");
    let prefix = format!("error: {}: ", path.display());
    err.strip_prefix(&prefix).unwrap_or_else(|| panic!("`{err}` does not start with `{prefix}`")).to_string()
}

#[test]
fn linear_learns_the_wine_table() {
    let sandbox = sandbox();
    let metrics = train(&sandbox, "linear", &wine("linear", json!({ "plugin": "linear" })), 10);
    assert_learned(&metrics, 0.8);
    let config = read_json(&sandbox.runs("linear")[0].join("training_config.json"));
    assert_eq!(config["model"]["plugin"], "linear@=1.0.0");
    assert_eq!(config["model"]["config"], json!({ "bias": true }), "defaults are recorded");
}

#[test]
fn sequential_learns_the_wine_table() {
    let sandbox = sandbox();
    let model = json!({ "plugin": "sequential", "config": { "layers": [
        { "type": "dense", "units": 32 }, { "type": "relu" }, { "type": "dropout", "rate": 0.1 },
        { "type": "residual", "layers": [{ "type": "dense", "units": 32 }, { "type": "relu" }] },
        { "type": "dense", "units": 3 }
    ] } });
    let metrics = train(&sandbox, "sequential", &wine("sequential", model), 10);
    assert_learned(&metrics, 0.8);
    // The layers are recorded as written.
    let config = read_json(&sandbox.runs("sequential")[0].join("training_config.json"));
    assert_eq!(config["model"]["config"]["layers"][3]["layers"][0], json!({ "type": "dense", "units": 32 }));
}

#[test]
fn resnet_and_sequential_learn_a_slice_of_fashion_mnist() {
    let sandbox = sandbox();
    let resnet = json!({ "plugin": "resnet", "config": { "depth": [1, 1], "width": 8 } });
    assert_learned(&train(&sandbox, "resnet", &fashion("resnet", resnet), 3), 0.4);
    let convnet = json!({ "plugin": "sequential", "config": { "layers": [
        { "type": "conv2d", "filters": 8, "kernel_size": 3 }, { "type": "batch_norm" }, { "type": "relu" },
        { "type": "max_pool2d", "size": 2 },
        { "type": "residual", "layers": [
            { "type": "conv2d", "filters": 8, "kernel_size": 3 }, { "type": "batch_norm" }, { "type": "relu" }
        ] },
        { "type": "avg_pool2d", "size": 2 }, { "type": "flatten" }
    ] } });
    assert_learned(&train(&sandbox, "convnet", &fashion("convnet", convnet), 2), 0.6);
}

#[test]
fn validate_deep_names_the_layer_that_does_not_fit_and_the_shapes() {
    let sandbox = sandbox();
    // Shapes need the data and the model: the plain `validate` (no plugin loaded) passes these.
    let deep_error = |name: &str, experiment: &Value| {
        let path = sandbox.experiment(name, experiment);
        sandbox.host(&["validate", path.to_str().unwrap()]).ok();
        deep_error(&sandbox, name, experiment)
    };
    let conv = |filters: i64, padding: &str| json!({ "type": "conv2d", "filters": filters, "kernel_size": 3, "padding": padding });
    let pool = json!({ "type": "max_pool2d", "size": 4 });
    let model =
        json!({ "plugin": "sequential", "config": { "layers": [conv(16, "same"), pool, pool, conv(8, "valid")] } });
    assert_eq!(
        deep_error("too-small", &fashion("too-small", model)),
        "model `sequential@1.1.0` (model) failed in create: configuration error: layers[3] (conv2d): input [16, 1, 1] \
         is smaller than the kernel 3x3"
    );
    let model = json!({ "plugin": "sequential", "config": { "layers": [
        conv(16, "same"),
        { "type": "residual", "layers": [{ "type": "conv2d", "filters": 32, "kernel_size": 3, "stride": 2 }] }
    ] } });
    assert_eq!(
        deep_error("residual", &fashion("residual", model)),
        "model `sequential@1.1.0` (model) failed in create: configuration error: layers[1] (residual): its layers \
         turn [16, 28, 28] into [32, 14, 14]"
    );
    let model = json!({ "plugin": "sequential", "config": { "layers": [
        { "type": "dense", "units": 16 },
        { "type": "residual", "layers": [{ "type": "relu" }, { "type": "conv2d", "filters": 16, "kernel_size": 1 }] }
    ] } });
    assert_eq!(
        deep_error("nested", &wine("nested", model)),
        "model `sequential@1.1.0` (model) failed in create: configuration error: layers[1].layers[1] (conv2d): input \
         [16] is not an image [channels, height, width]"
    );
}

#[test]
fn validate_deep_refuses_resnet_on_the_wine_table_naming_the_shape() {
    let sandbox = sandbox();
    assert_eq!(
        deep_error(&sandbox, "resnet-wine", &wine("resnet-wine", json!({ "plugin": "resnet" }))),
        "model `resnet@1.1.0` (model) failed in create: configuration error: resnet needs images [channels, height, \
         width], got input shape [13]"
    );
}

fn misspelled() -> Value {
    json!({ "plugin": "sequential", "config": { "layers": [
        { "type": "dense", "units": 16 }, { "type": "rleu" }, { "type": "dropout", "rat": 0.1 }
    ] } })
}

#[test]
fn a_misspelled_layer_type_or_field_is_named_with_its_path() {
    let sandbox = sandbox();
    assert_eq!(
        deep_error(&sandbox, "misspelled", &wine("misspelled", misspelled())),
        "3 problems: model.config.layers[1].type: `rleu` is not one of dense, conv2d, max_pool2d, avg_pool2d, \
         global_avg_pool, batch_norm, dropout, flatten, relu, gelu, tanh, sigmoid, residual (sequential); \
         model.config.layers[2].rat: unknown field (fields: rate, type) (sequential); model.config.layers[2].rate: \
         missing field (sequential)",
        "the layer list's schema is checked before the plugin is loaded"
    );
}

/// What `validate` (no plugin loaded) should say once the host checks `json` keys against the
/// schemas plugins declare for them (recorded at install, shown by `gymnos-host schema`); today
/// it checks only their JSON type, and `validate --deep` catches the misspelling (above).
#[test]
fn validate_checks_the_layer_list_against_its_schema() {
    let sandbox = sandbox();
    let path = sandbox.experiment("misspelled", &wine("misspelled", misspelled()));
    let err = sandbox.host(&["validate", path.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(
        err,
        format!(
            "error: {}: 3 problems: model.config.layers[1].type: `rleu` is not one of dense, conv2d, max_pool2d, \
             avg_pool2d, global_avg_pool, batch_norm, dropout, flatten, relu, gelu, tanh, sigmoid, residual \
             (sequential); model.config.layers[2].rat: unknown field (fields: rate, type) (sequential); \
             model.config.layers[2].rate: missing field (sequential)",
            path.display()
        )
    );
}

#[test]
fn the_schema_describes_each_model_and_the_layer_list() {
    let sandbox = sandbox();
    let schema: Value = serde_json::from_str(sandbox.host(&["schema"]).ok()).unwrap();
    let conditions = schema["properties"]["model"]["allOf"].as_array().unwrap();
    let config_of = |name: &str| {
        conditions
            .iter()
            .find(|c| c["if"]["properties"]["plugin"]["pattern"] == format!("^{name}(@.*)?$"))
            .map(|c| c["then"]["properties"]["config"].clone())
            .unwrap_or_else(|| panic!("no schema for {name}: {schema}"))
    };
    assert_eq!(config_of("linear")["properties"]["bias"]["default"], true);
    let resnet = config_of("resnet");
    assert_eq!(resnet["properties"]["depth"]["default"], json!([2, 2, 2]));
    assert_eq!(resnet["properties"]["stem"]["enum"], json!(["auto", "small", "large"]));
    let sequential = config_of("sequential");
    assert_eq!(sequential["required"], json!(["layers"]));
    let layers = &sequential["properties"]["layers"];
    let types: Vec<&str> = layers["items"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["properties"]["type"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "dense",
            "conv2d",
            "max_pool2d",
            "avg_pool2d",
            "global_avg_pool",
            "batch_norm",
            "dropout",
            "flatten",
            "relu",
            "gelu",
            "tanh",
            "sigmoid",
            "residual"
        ]
    );
    let conv2d = &layers["items"]["oneOf"][1];
    assert_eq!(conv2d["required"], json!(["type", "filters", "kernel_size"]));
    assert_eq!(conv2d["additionalProperties"], false);
}
