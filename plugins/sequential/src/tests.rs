use gymnos_plugin_sdk::{
    harness,
    serde_json::{json, Value},
    tch::{Device, Kind, Tensor},
    ConfigSchema, Configurable, Context, Model,
};
use proptest::prelude::*;

use super::{schema, Sequential, SequentialConfig};

fn build(layers: Value, input_shape: &[i64], num_outputs: i64) -> gymnos_plugin_sdk::Result<Sequential> {
    let ctx = Context { input_shape: input_shape.to_vec(), num_outputs, ..Context::standalone() };
    Sequential::build(SequentialConfig::from_json(json!({ "layers": layers }))?, &ctx)
}

fn error(layers: Value, input_shape: &[i64]) -> String {
    build(layers, input_shape, 3).err().expect("a configuration error").to_string()
}

fn variables(model: &Sequential) -> Vec<(String, Vec<i64>)> {
    let mut vars: Vec<(String, Vec<i64>)> =
        model.var_store().variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    vars.sort();
    vars
}

fn output_shape(model: &Sequential, input_shape: &[i64]) -> Vec<i64> {
    let mut shape = vec![2];
    shape.extend_from_slice(input_shape);
    model.forward(&Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)), true).unwrap().size()
}

#[test]
fn meets_the_model_contract() {
    let table = json!([
        { "type": "dense", "units": 8 }, { "type": "batch_norm" }, { "type": "relu" }, { "type": "dropout", "rate": 0.1 },
        { "type": "residual", "layers": [{ "type": "dense", "units": 8 }, { "type": "gelu" }] },
        { "type": "tanh" }, { "type": "dense", "units": 3 }
    ]);
    harness::check_model::<Sequential>(json!({ "layers": table }), &[13], 3).unwrap();
    let image = json!([
        { "type": "conv2d", "filters": 4, "kernel_size": 3 }, { "type": "batch_norm" }, { "type": "relu" },
        { "type": "max_pool2d", "size": 2 },
        { "type": "residual", "layers": [
            { "type": "conv2d", "filters": 4, "kernel_size": 2 }, { "type": "sigmoid" },
            { "type": "residual", "layers": [{ "type": "conv2d", "filters": 4, "kernel_size": 5, "padding": 2 }] }
        ] },
        { "type": "conv2d", "filters": 6, "kernel_size": 3, "stride": 2, "padding": "valid" },
        { "type": "avg_pool2d", "size": 2, "stride": 1 },
        { "type": "global_avg_pool" }
    ]);
    harness::check_model::<Sequential>(json!({ "layers": image }), &[1, 12, 12], 10).unwrap();
    harness::check_model::<Sequential>(json!({ "layers": [{ "type": "flatten" }] }), &[2, 3, 4], 5).unwrap();
    harness::check_model::<Sequential>(json!({ "layers": [] }), &[4], 2).unwrap();
    let err = harness::check_model::<Sequential>(json!({}), &[4], 2).unwrap_err();
    assert_eq!(err, "create: configuration error: layers: required key of type json is missing");
}

#[test]
fn the_layer_list_is_checked_against_its_schema_with_paths() {
    assert_eq!(
        error(json!([{ "type": "dense", "units": 8 }, { "type": "denze", "units": 8 }]), &[13]),
        "configuration error: layers[1].type: `denze` is not one of dense, conv2d, max_pool2d, avg_pool2d, \
         global_avg_pool, batch_norm, dropout, flatten, relu, gelu, tanh, sigmoid, residual"
    );
    assert_eq!(
        error(
            json!([
                { "type": "dense", "unitz": 8 },
                { "units": 4 },
                { "type": "conv2d", "filters": "4", "kernel_size": 0, "padding": "full" },
                { "type": "dropout", "rate": 1.0 },
                "relu",
                { "type": "residual", "layers": [{ "type": "max_pool2d", "size": 2.5 }, { "type": "relu", "inplace": true }] }
            ]),
            &[13]
        ),
        "configuration error: layers[0].unitz: unknown field (fields: type, units); layers[0].units: missing field; \
         layers[1].type: missing field (one of dense, conv2d, max_pool2d, avg_pool2d, global_avg_pool, batch_norm, \
         dropout, flatten, relu, gelu, tanh, sigmoid, residual); layers[2].filters: expected an integer, found a \
         string; layers[2].kernel_size: 0 is below the smallest value allowed, 1; layers[2].padding: `full` is not \
         one of same, valid; layers[3].rate: 1.0 is not below 1; layers[4]: expected an object, found a string; \
         layers[5].layers[0].size: expected an integer, found a number; layers[5].layers[1].inplace: unknown field \
         (fields: type)"
    );
    assert_eq!(
        error(json!({ "type": "dense" }), &[13]),
        "configuration error: layers: expected a list, found an object"
    );
    assert_eq!(
        error(json!([{ "type": "conv2d", "filters": 4, "kernel_size": 3, "padding": -1, "stride": 2000 }]), &[1, 8, 8]),
        "configuration error: layers[0].padding: -1 is below the smallest value allowed, 0; layers[0].stride: 2000 is \
         above the largest value allowed, 1024"
    );
    // Deeper than the declared schema spells out: checked all the same.
    let mut deep = json!([{ "type": "dense", "units": 0 }]);
    for _ in 0..6 {
        deep = json!([{ "type": "residual", "layers": deep }]);
    }
    assert_eq!(
        error(deep, &[13]),
        format!(
            "configuration error: layers{}[0].units: 0 is below the smallest value allowed, 1",
            "[0].layers".repeat(6)
        )
    );
}

#[test]
fn the_first_layer_that_does_not_fit_is_named_with_the_shapes() {
    let conv = |filters: i64| json!({ "type": "conv2d", "filters": filters, "kernel_size": 3 });
    let pool = json!({ "type": "max_pool2d", "size": 2 });
    assert_eq!(
        error(
            json!([conv(16), pool, pool, { "type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "valid" }]),
            &[1, 8, 8]
        ),
        "configuration error: layers[3] (conv2d): input [16, 2, 2] is smaller than the kernel 3x3"
    );
    assert_eq!(
        error(json!([{ "type": "conv2d", "filters": 8, "kernel_size": 7, "padding": 1 }]), &[1, 4, 4]),
        "configuration error: layers[0] (conv2d): input [1, 4, 4] padded by 1 is smaller than the kernel 7x7"
    );
    assert_eq!(
        error(json!([{ "type": "max_pool2d", "size": 4 }, { "type": "avg_pool2d", "size": 2 }]), &[3, 5, 5]),
        "configuration error: layers[1] (avg_pool2d): input [3, 1, 1] is smaller than the window 2x2"
    );
    assert_eq!(
        error(json!([conv(4), { "type": "dense", "units": 8 }]), &[1, 8, 8]),
        "configuration error: layers[1] (dense): input [4, 8, 8] is not a vector [features]; put a flatten or \
         global_avg_pool before it"
    );
    assert_eq!(
        error(json!([conv(4)]), &[13]),
        "configuration error: layers[0] (conv2d): input [13] is not an image [channels, height, width]"
    );
    assert_eq!(
        error(json!([{ "type": "global_avg_pool" }]), &[13]),
        "configuration error: layers[0] (global_avg_pool): input [13] is not an image [channels, height, width]"
    );
    assert_eq!(
        error(
            json!([conv(32), { "type": "residual", "layers": [{ "type": "conv2d", "filters": 64, "kernel_size": 3, "stride": 2 }] }]),
            &[1, 14, 14]
        ),
        "configuration error: layers[1] (residual): its layers turn [32, 14, 14] into [64, 7, 7]"
    );
    assert_eq!(
        error(
            json!([
                { "type": "dense", "units": 8 },
                { "type": "relu" },
                { "type": "residual", "layers": [{ "type": "dense", "units": 8 }, { "type": "global_avg_pool" }] }
            ]),
            &[13]
        ),
        "configuration error: layers[2].layers[1] (global_avg_pool): input [8] is not an image [channels, height, \
         width]"
    );
    assert_eq!(
        error(json!([{ "type": "batch_norm" }]), &[1, 2, 3, 4, 5]),
        "configuration error: layers[0] (batch_norm): input [1, 2, 3, 4, 5] is not [channels] with 0 to 3 more \
         dimensions"
    );
}

#[test]
fn shapes_follow_the_layers() {
    // `same` keeps the size divided by the stride, rounded up, odd or even kernel.
    for (kernel, stride, side, expected) in [(3, 1, 9, 9), (4, 1, 9, 9), (2, 2, 9, 5), (5, 3, 10, 4), (1, 1, 7, 7)] {
        let layers = json!([{ "type": "conv2d", "filters": 2, "kernel_size": kernel, "stride": stride }]);
        let model = build(layers, &[1, side, side], 2).unwrap();
        let vars = variables(&model);
        assert_eq!(vars[0], ("head.bias".to_string(), vec![2]));
        assert_eq!(vars[1], ("head.weight".to_string(), vec![2, 2 * expected * expected]), "{kernel} {stride} {side}");
        assert_eq!(output_shape(&model, &[1, side, side]), [2, 2]);
    }
    // `valid` and pixels, and pooling windows with their strides.
    let layers = json!([
        { "type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "valid" },
        { "type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 2 },
        { "type": "max_pool2d", "size": 3, "stride": 2 },
        { "type": "avg_pool2d", "size": 2 },
        { "type": "flatten" }
    ]);
    // 11 -> 9 -> 11 -> 5 -> 2: [2, 2, 2] flattened, 8 features.
    let model = build(layers, &[1, 11, 11], 3).unwrap();
    assert!(variables(&model).contains(&("head.weight".to_string(), vec![3, 8])));
    assert_eq!(output_shape(&model, &[1, 11, 11]), [2, 3]);
    // Parameters are named by their index path.
    let layers = json!([
        { "type": "dense", "units": 4 },
        { "type": "residual", "layers": [{ "type": "relu" }, { "type": "dense", "units": 4 }, { "type": "batch_norm" }] },
    ]);
    let names: Vec<String> = variables(&build(layers, &[13], 3).unwrap()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "head.bias",
            "head.weight",
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.layers.1.bias",
            "layers.1.layers.1.weight",
            "layers.1.layers.2.bias",
            "layers.1.layers.2.running_mean",
            "layers.1.layers.2.running_var",
            "layers.1.layers.2.weight",
        ]
    );
}

#[test]
fn the_output_layer_is_appended_unless_the_last_layer_is_one() {
    // Ends in a dense layer to the outputs: nothing appended.
    let model =
        build(json!([{ "type": "dense", "units": 8 }, { "type": "relu" }, { "type": "dense", "units": 3 }]), &[13], 3)
            .unwrap();
    assert!(!variables(&model).iter().any(|(n, _)| n.starts_with("head")));
    // Ends in a vector of the right size but not a dense layer (logits through a ReLU would
    // never be negative): a head is appended.
    let model = build(json!([{ "type": "dense", "units": 3 }, { "type": "relu" }]), &[13], 3).unwrap();
    assert!(variables(&model).contains(&("head.weight".to_string(), vec![3, 3])));
    // An image: flattened into the head.
    let model = build(json!([{ "type": "conv2d", "filters": 2, "kernel_size": 1 }]), &[1, 3, 3], 4).unwrap();
    assert!(variables(&model).contains(&("head.weight".to_string(), vec![4, 18])));
    assert_eq!(output_shape(&model, &[1, 3, 3]), [2, 4]);
    // No layers: a linear model.
    let model = build(json!([]), &[2, 3], 4).unwrap();
    assert_eq!(variables(&model), [("head.bias".to_string(), vec![4]), ("head.weight".to_string(), vec![4, 6])]);
}

#[test]
fn a_residual_layer_adds_its_input() {
    // Inner layers that output zeros (a dense layer with zero weights and bias): the identity.
    let model = build(
        json!([{ "type": "residual", "layers": [{ "type": "dense", "units": 5 }] }, { "type": "dense", "units": 5 }]),
        &[5],
        5,
    )
    .unwrap();
    gymnos_plugin_sdk::tch::no_grad(|| {
        for (name, mut t) in model.var_store().variables() {
            if name.starts_with("layers.0.") {
                let _ = t.zero_();
            } else if name == "layers.1.weight" {
                t.copy_(&Tensor::eye(5, (Kind::Float, Device::Cpu)));
            } else {
                let _ = t.zero_();
            }
        }
    });
    let x = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
    assert!(model.forward(&x, false).unwrap().allclose(&x, 1e-6, 1e-6, false));
}

#[test]
fn the_declared_schema_lists_every_layer_type_and_nests_residuals() {
    let declared = schema::layers_schema();
    let types: Vec<&str> = declared["items"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["properties"]["type"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(types, schema::LAYER_TYPES);
    let mut node = &declared;
    for _ in 0..schema::SCHEMA_NESTING {
        node = &node["items"]["oneOf"][12]["properties"]["layers"];
        assert_eq!(node["items"]["oneOf"].as_array().unwrap().len(), 13);
    }
    assert_eq!(node["items"]["oneOf"][12]["properties"]["layers"]["items"], json!({ "type": "object" }));
    // What the plugin declares: the key's schema, as the host records it at install.
    let keys = SequentialConfig::keys();
    assert_eq!(keys[0].schema.as_ref(), Some(&declared));
    assert_eq!(keys[0].default, None, "required");
}

#[test]
fn sizes_that_cannot_fit_are_refused_before_anything_is_allocated_naming_the_layer() {
    let machine = gymnos_plugin_sdk::memory::human(u128::from(gymnos_plugin_sdk::memory::limit_bytes()));
    let dense = |units: i64| json!({ "type": "dense", "units": units });
    // The per-layer cap (2^20 units) does not bound the product of two layers.
    assert_eq!(
        error(json!([dense(1 << 20), dense(1 << 20)]), &[13]),
        format!(
            "configuration error: layers[1].units (the network up to this dense layer of 1048576 x 1048576 weights): \
             needs 4.4 TB (4398117814272 bytes), and this machine has {machine} of memory"
        )
    );
    let conv = |filters: i64| json!({ "type": "conv2d", "filters": filters, "kernel_size": 3 });
    let err = error(json!([conv(1 << 20), conv(1 << 20)]), &[1, 28, 28]);
    assert!(
        err.starts_with(
            "configuration error: layers[1].filters (the network up to this conv2d of 1048576 to 1048576 channels, \
             output [1048576, 28, 28]): needs "
        ),
        "{err}"
    );
    // Inside a residual block, and the appended output layer after a huge flatten.
    let err = error(json!([dense(1 << 20), { "type": "residual", "layers": [dense(1 << 20)] }]), &[13]);
    assert!(err.starts_with("configuration error: layers[1].layers[0].units (the network up to this dense"), "{err}");
    let err = error(json!([conv(1 << 20), conv(64), { "type": "flatten" }]), &[1, 256, 256]);
    assert!(err.starts_with("configuration error: layers[0].filters ("), "{err}");
    let err = error(json!([{ "type": "flatten" }]), &[1 << 20, 1 << 20]);
    assert!(
        err.starts_with(
            "configuration error: layers[0] (flatten): the network up to its output [1099511627776]: needs"
        ),
        "{err}"
    );
    let ctx = Context { input_shape: vec![1 << 20], num_outputs: 1 << 21, ..Context::standalone() };
    let err = Sequential::build(SequentialConfig::from_json(json!({ "layers": [] })).unwrap(), &ctx).err().unwrap();
    assert!(
        err.to_string().starts_with(
            "configuration error: layers (the output layer appended, of 1048576 x 2097152 weights): needs 8.8 TB"
        ),
        "{err}"
    );
}

/// One layer of any type, sizes small or at the cap, `residual` nesting others.
fn any_layer() -> impl Strategy<Value = Value> {
    let size = prop_oneof![3 => 1i64..6, 1 => Just(1i64 << 20)];
    let padding = prop_oneof![Just(json!("same")), Just(json!("valid")), (0i64..3).prop_map(|p| json!(p))];
    let leaf = prop_oneof![
        size.clone().prop_map(|units| json!({ "type": "dense", "units": units })),
        (size, 1i64..4, 1i64..3, padding).prop_map(|(filters, kernel, stride, padding)| json!({
            "type": "conv2d", "filters": filters, "kernel_size": kernel, "stride": stride, "padding": padding
        })),
        (1i64..3).prop_map(|size| json!({ "type": "max_pool2d", "size": size })),
        (1i64..3).prop_map(|size| json!({ "type": "avg_pool2d", "size": size, "stride": 1 })),
        prop::sample::select(vec!["flatten", "global_avg_pool", "batch_norm", "relu", "tanh"])
            .prop_map(|ty| json!({ "type": ty })),
        Just(json!({ "type": "dropout", "rate": 0.2 })),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop::collection::vec(inner, 1..3).prop_map(|layers| json!({ "type": "residual", "layers": layers }))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any list of layers on any input: the sizes are worked out before anything is allocated,
    /// and create either builds the network or refuses it with a configuration error naming a
    /// layer (`layers[..]`); never a panic or an allocation failure.
    #[test]
    fn create_builds_or_names_the_layer(
        layers in prop::collection::vec(any_layer(), 0..6),
        input in prop::sample::select(vec![vec![5i64], vec![1, 4, 4], vec![2, 6, 6]]),
        outputs in 1i64..4,
    ) {
        let layers = Value::Array(layers);
        let specs = crate::parse_layers(&layers).unwrap();
        let mut tally = gymnos_plugin_sdk::memory::Tally::default();
        let planned = crate::layers::plan(&specs, &input, "layers", &mut tally);
        // Networks the plan accepts but that take more than 64 MB are not built here.
        if planned.is_ok() && tally.bytes().is_none_or(|b| b > 64 << 20) {
            return Ok(());
        }
        match build(layers, &input, outputs) {
            Ok(model) => {
                prop_assert!(planned.is_ok());
                let mut batch = vec![2];
                batch.extend_from_slice(&input);
                let out = model.forward(&Tensor::randn(batch.as_slice(), (Kind::Float, Device::Cpu)), true).unwrap();
                prop_assert_eq!(out.size(), vec![2, outputs]);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("configuration error: layers"), "{}", text);
                if let Err(planned) = planned {
                    prop_assert_eq!(planned.to_string(), text);
                }
            }
        }
    }
}
