//! Category columns of tabular data: `label-encode` and `one-hot`, both fitted on the distinct
//! values each column takes in training.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
};

use gymnos_plugin_sdk::{
    fit_whole,
    tch::{Kind, Tensor},
    Config, Configurable, Context, IncrementalPreprocessor, PluginError, Preprocessor, Result,
};

use crate::{bad_shape, batch_before_begin, no_samples, not_fitted, state_before_fit};

/// A category code, ordered as numbers (NaN never gets here; -0 is stored as 0).
#[derive(Clone, Copy, Debug)]
struct Code(f64);

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Code {}
impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Code {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The listed columns resolved against `width` columns (negative indices count from the end),
/// or why they cannot be.
fn resolve(columns: &[i64], width: i64) -> std::result::Result<Vec<i64>, String> {
    let mut resolved: Vec<i64> = Vec::with_capacity(columns.len());
    for (i, &c) in columns.iter().enumerate() {
        let j = if c < 0 { width + c } else { c };
        if !(0..width).contains(&j) {
            return Err(format!("column {c} is out of range"));
        }
        if let Some(k) = resolved.iter().position(|&r| r == j) {
            return Err(format!("columns {} and {} are the same column", columns[k], columns[i]));
        }
        resolved.push(j);
    }
    Ok(resolved)
}

/// What `label-encode` and `one-hot` share: the listed columns and the distinct values each takes
/// in training.
struct Categories {
    name: &'static str,
    /// As configured (negative: from the end).
    columns: Vec<i64>,
    /// The most distinct values a column may take in training.
    max_categories: usize,
    /// Between `begin_fit` and `end_fit`: the training features' shape (once a batch came), the
    /// distinct values per resolved column, and the number of samples.
    running: Option<Running>,
    /// The number of feature columns, and the sorted distinct values per resolved column.
    fitted: Option<(i64, BTreeMap<i64, Vec<f64>>)>,
}

#[derive(Default)]
struct Running {
    shape: Option<Vec<i64>>,
    values: BTreeMap<i64, BTreeSet<Code>>,
    samples: i64,
}

impl Categories {
    fn new(name: &'static str, columns: Vec<i64>, max_categories: i64) -> Result<Self> {
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(PluginError::config(format!("{name}: column {c} is listed twice in `columns`")));
            }
        }
        let max_categories = usize::try_from(max_categories)
            .ok()
            .filter(|&m| m >= 1)
            .ok_or_else(|| PluginError::config(format!("max_categories: {max_categories} is not >= 1")))?;
        Ok(Self { name, columns, max_categories, running: None, fitted: None })
    }

    /// Checks that `x` is tabular and resolves the columns against its width.
    fn columns_of(&self, x: &Tensor) -> Result<Vec<i64>> {
        let shape = x.size();
        if shape.len() != 2 {
            return Err(bad_shape(self.name, "tabular features [n, f]", &shape));
        }
        resolve(&self.columns, shape[1])
            .map_err(|why| PluginError::data(format!("{}: {why} for features of shape {shape:?}", self.name)))
    }

    fn begin_fit(&mut self) {
        self.fitted = None;
        self.running = Some(Running::default());
    }

    fn fit_batch(&mut self, x: &Tensor) -> Result<()> {
        let name = self.name;
        let columns = self.columns_of(x)?;
        let running = self.running.as_mut().ok_or_else(|| batch_before_begin(name))?;
        let shape = x.size();
        match &running.shape {
            Some(earlier) if earlier[1] != shape[1] => {
                return Err(PluginError::data(format!(
                    "{name}: earlier training batches had features [n, {}], got shape {shape:?}",
                    earlier[1]
                )))
            }
            Some(_) => {}
            None => running.shape = Some(shape.clone()),
        }
        for j in columns {
            let column = x.select(1, j).to_kind(Kind::Double);
            if column.isnan().any().int64_value(&[]) == 1 {
                return Err(PluginError::data(format!("{name}: column {j} of the training features holds NaN")));
            }
            let (distinct, _) = column.internal_unique(true, false);
            let distinct = Vec::<f64>::try_from(&distinct.contiguous())
                .map_err(|e| PluginError::runtime(format!("{name}: reading column {j}: {e}")))?;
            // A category code is an integer; anything else is a measurement, not a category.
            if let Some(&v) = distinct.iter().find(|v| v.fract() != 0.0) {
                // As written in the data: a float32 value shortest as float32 (11.03, not 11.0299997).
                let v = if f64::from(v as f32) == v { (v as f32).to_string() } else { v.to_string() };
                return Err(PluginError::data(format!(
                    "{name}: column {j} holds {v} in training, not an integer category code: it looks like a \
                     continuous feature; leave it out of `columns` (a csv data set gives the columns listed in its \
                     `categorical` as integer codes)"
                )));
            }
            // `+ 0.0` turns -0 into 0, which libtorch compares equal to it.
            let seen = running.values.entry(j).or_default();
            seen.extend(distinct.into_iter().map(|v| Code(v + 0.0)));
            if seen.len() > self.max_categories {
                return Err(PluginError::data(format!(
                    "{name}: column {j} takes more than {} distinct values in training (max_categories): it looks \
                     like a continuous feature or an identifier, not categories; leave it out of `columns`, or raise \
                     `max_categories` if it holds that many categories",
                    self.max_categories
                )));
            }
        }
        running.samples += shape[0];
        Ok(())
    }

    fn end_fit(&mut self) -> Result<()> {
        let running = self.running.take().ok_or_else(|| batch_before_begin(self.name))?;
        match running.shape {
            Some(shape) if running.samples > 0 => {
                let values = running.values.into_iter().map(|(j, set)| (j, set.into_iter().map(|c| c.0).collect()));
                self.fitted = Some((shape[1], values.collect()));
                Ok(())
            }
            _ => Err(no_samples(self.name)),
        }
    }

    /// For each resolved column of `x` (in column order): the index of each value among the
    /// training values (`int64 [n]`), whether the value was seen in training (`bool [n]`), and
    /// the number of training values.
    fn lookup(&self, x: &Tensor) -> Result<Vec<(i64, Tensor, Tensor, i64)>> {
        let (width, values) = self.fitted.as_ref().ok_or_else(|| not_fitted(self.name))?;
        let shape = x.size();
        if shape.len() != 2 || shape[1] != *width {
            return Err(PluginError::data(format!(
                "{}: was fitted on tabular features [n, {width}], got shape {shape:?}",
                self.name
            )));
        }
        Ok(values
            .iter()
            .map(|(&j, known)| {
                let k = known.len() as i64;
                let known = Tensor::from_slice(known);
                let column = x.select(1, j).to_kind(Kind::Double).contiguous();
                let index = column.bucketize(&known, false, false).clamp_max(k - 1);
                let seen = known.index_select(0, &index).eq_tensor(&column);
                (j, index, seen, k)
            })
            .collect())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let (width, values) = self.fitted.as_ref().ok_or_else(|| state_before_fit(self.name))?;
        let mut state = vec![("width".to_string(), Tensor::from_slice(&[*width]))];
        state.extend(values.iter().map(|(j, v)| (format!("categories.{j}"), Tensor::from_slice(v))));
        Ok(state)
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let name = self.name;
        let mut width = None;
        let mut values = BTreeMap::new();
        for (key, tensor) in state {
            if key == "width" {
                let w = Vec::<i64>::try_from(&tensor.to_kind(Kind::Int64).contiguous().view([-1])).unwrap_or_default();
                match w[..] {
                    [w] if w > 0 => width = Some(w),
                    _ => return Err(PluginError::data(format!("{name}: state `width` is not one positive count"))),
                }
            } else if let Some(j) = key.strip_prefix("categories.").and_then(|j| j.parse::<i64>().ok()) {
                let v = (tensor.dim() == 1)
                    .then(|| Vec::<f64>::try_from(&tensor.to_kind(Kind::Double).contiguous()).ok())
                    .flatten()
                    .filter(|v| !v.is_empty() && v.windows(2).all(|p| p[0] < p[1]) && !v.iter().any(|x| x.is_nan()))
                    .ok_or_else(|| {
                        PluginError::data(format!("{name}: state `{key}` is not a sorted list of distinct values"))
                    })?;
                values.insert(j, v);
            } else {
                return Err(PluginError::data(format!("{name}: unknown state tensor `{key}`")));
            }
        }
        let width = width.ok_or_else(|| PluginError::data(format!("{name}: state needs `width`")))?;
        let mut columns = resolve(&self.columns, width)
            .map_err(|why| PluginError::data(format!("{name}: {why} for the {width} columns of the state")))?;
        columns.sort_unstable();
        let stored: Vec<i64> = values.keys().copied().collect();
        if stored != columns {
            return Err(PluginError::data(format!(
                "{name}: the state holds categories of columns {stored:?}, the configuration lists columns {columns:?}"
            )));
        }
        self.fitted = Some((width, values));
        Ok(())
    }
}

/// `x` (`[n, width]`) as `float32`, with each listed column `j` replaced by its block
/// (`[n, w]`, in place of the column).
fn replace_columns(x: &Tensor, blocks: Vec<(i64, Tensor)>) -> Tensor {
    let width = x.size()[1];
    let mut parts = Vec::new();
    let mut next = 0;
    for (j, block) in blocks {
        if j > next {
            parts.push(x.narrow(1, next, j - next).to_kind(Kind::Float));
        }
        parts.push(block.to_kind(Kind::Float));
        next = j + 1;
    }
    if next < width {
        parts.push(x.narrow(1, next, width - next).to_kind(Kind::Float));
    }
    Tensor::cat(&parts, 1)
}

/// The configuration of `label-encode`.
#[derive(Config)]
pub struct LabelEncodeConfig {
    /// Indices of the columns holding category codes (negative counts from the end)
    #[config(non_empty)]
    pub columns: Vec<i64>,
    /// What a value not seen in training maps to
    #[config(default = -1.0)]
    pub unknown: f64,
    /// The most distinct values a listed column may take in training; a column with more (or
    /// with values that are not integers) is refused as continuous, not categories
    #[config(default = 50, range = 1..=1000000)]
    pub max_categories: i64,
}

/// For tabular features `[n, f]`: replaces each value of the listed `columns` (integer category
/// codes, at most `max_categories` distinct ones per column in training) by its index among the distinct values the column takes in training, sorted
/// (`0..k-1`). A value not seen in training (NaN included) becomes `unknown` (default -1). Other
/// columns are kept; the result is `float32 [n, f]`. State: `width` (`int64 [1]`, the number of
/// columns) and, per listed column `j` (counted from 0), `categories.<j>` (its training values,
/// sorted, `float64 [k]`).
pub struct LabelEncode {
    categories: Categories,
    unknown: f64,
}

impl Configurable for LabelEncode {
    const NAME: &'static str = "label-encode";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Replaces category codes in chosen columns by their index among the training values";
    type Config = LabelEncodeConfig;

    fn build(config: LabelEncodeConfig, _ctx: &Context) -> Result<Self> {
        let categories = Categories::new(Self::NAME, config.columns, config.max_categories)?;
        Ok(Self { categories, unknown: config.unknown })
    }
}

impl Preprocessor for LabelEncode {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
        fit_whole(self, features, targets)
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        let blocks = self.categories.lookup(features)?.into_iter().map(|(j, index, seen, _)| {
            let unknown = Tensor::full([1], self.unknown, (Kind::Double, features.device()));
            (j, index.to_kind(Kind::Double).where_self(&seen, &unknown).unsqueeze(1))
        });
        Ok(replace_columns(features, blocks.collect()))
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.categories.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.categories.load_state(state)
    }
}

impl IncrementalPreprocessor for LabelEncode {
    fn begin_fit(&mut self) -> Result<()> {
        self.categories.begin_fit();
        Ok(())
    }

    fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        self.categories.fit_batch(features)
    }

    fn end_fit(&mut self) -> Result<()> {
        self.categories.end_fit()
    }
}

/// The configuration of `one-hot`.
#[derive(Config)]
pub struct OneHotConfig {
    /// Indices of the columns holding category codes (negative counts from the end)
    #[config(non_empty)]
    pub columns: Vec<i64>,
    /// The most distinct values a listed column may take in training; a column with more (or
    /// with values that are not integers) is refused as continuous, not categories
    #[config(default = 50, range = 1..=1000000)]
    pub max_categories: i64,
}

/// For tabular features `[n, f]`: replaces each of the listed `columns` (integer category codes,
/// at most `max_categories` distinct ones per column in training), in place, by `k` columns: the one-hot code of the value among the `k` distinct
/// values the column takes in training, sorted. A value not seen in training (NaN included)
/// gives `k` zeros. Other columns keep their order; the result is `float32`. State: as
/// `label-encode`'s, `width` and `categories.<j>`.
pub struct OneHot {
    categories: Categories,
}

impl Configurable for OneHot {
    const NAME: &'static str = "one-hot";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Replaces category columns by one-hot columns of the values seen in training";
    type Config = OneHotConfig;

    fn build(config: OneHotConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { categories: Categories::new(Self::NAME, config.columns, config.max_categories)? })
    }
}

impl Preprocessor for OneHot {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
        fit_whole(self, features, targets)
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        let blocks = self.categories.lookup(features)?.into_iter().map(|(j, index, seen, k)| {
            (j, index.one_hot(k).to_kind(Kind::Float) * seen.unsqueeze(1).to_kind(Kind::Float))
        });
        Ok(replace_columns(features, blocks.collect()))
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.categories.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.categories.load_state(state)
    }
}

impl IncrementalPreprocessor for OneHot {
    fn begin_fit(&mut self) -> Result<()> {
        self.categories.begin_fit();
        Ok(())
    }

    fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        self.categories.fit_batch(features)
    }

    fn end_fit(&mut self) -> Result<()> {
        self.categories.end_fit()
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::{json, Value},
        tch::{Kind, Tensor},
        ConfigSchema, Configurable, Context, IncrementalPreprocessor, Preprocessor, Rng,
    };

    use super::{LabelEncode, LabelEncodeConfig, OneHot, OneHotConfig};
    use crate::testing::{assert_close, targets, tensor, values};

    fn label_encode(config: Value) -> LabelEncode {
        LabelEncode::build(LabelEncodeConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    fn one_hot(config: Value) -> OneHot {
        OneHot::build(OneHotConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    /// A table of `n` rows: a numeric column, a category column with codes from {-3, 7, 40, 12},
    /// another numeric one, and a category column with codes 0..5.
    fn table(n: i64, seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let codes = [-3.0f32, 7.0, 40.0, 12.0];
        let rows: Vec<f32> = (0..n)
            .flat_map(|_| {
                let a = rng.uniform(-1.0, 1.0) as f32;
                let b = codes[rng.below(4) as usize];
                let c = rng.uniform(0.0, 10.0) as f32;
                let d = rng.below(5) as f32;
                [a, b, c, d]
            })
            .collect();
        Tensor::from_slice(&rows).view([n, 4])
    }

    /// The tiny table of the exact tests: column 0 categories {5, 9, -1}, column 2 {0, 1}.
    fn tiny() -> Tensor {
        tensor(&[9.0, 0.5, 1.0, 5.0, 1.5, 0.0, -1.0, 2.5, 1.0, 9.0, 3.5, 1.0], &[4, 3])
    }

    #[test]
    fn meet_the_incremental_contract() {
        let x = table(41, 1);
        let y = targets(41);
        harness::check_incremental_preprocessor::<LabelEncode>(json!({ "columns": [1, -1] }), &x, &y, 6).unwrap();
        harness::check_incremental_preprocessor::<LabelEncode>(json!({ "columns": [3], "unknown": 99 }), &x, &y, 40)
            .unwrap();
        harness::check_incremental_preprocessor::<OneHot>(json!({ "columns": [1, 3] }), &x, &y, 6).unwrap();
        harness::check_incremental_preprocessor::<OneHot>(json!({ "columns": [-3] }), &x, &y, 10).unwrap();
    }

    #[test]
    fn label_encode_maps_training_values_to_their_sorted_index_and_others_to_unknown() {
        let mut p = label_encode(json!({ "columns": [0, -1] }));
        p.fit(&tiny(), &targets(4)).unwrap();
        let out = p.transform(&tiny()).unwrap();
        assert_eq!(out.kind(), Kind::Float);
        assert_close(&values(&out), &[2.0, 0.5, 1.0, 1.0, 1.5, 0.0, 0.0, 2.5, 1.0, 2.0, 3.5, 1.0], 0.0);
        // 7 and 2 were never seen in training; -0 is 0.
        let new = tensor(&[7.0, 8.0, -0.0, -1.0, 0.0, 2.0], &[2, 3]);
        assert_close(&values(&p.transform(&new).unwrap()), &[-1.0, 8.0, 0.0, 0.0, 0.0, -1.0], 0.0);
        let mut p = label_encode(json!({ "columns": [0], "unknown": 3 }));
        p.fit(&tiny(), &targets(4)).unwrap();
        assert_close(&values(&p.transform(&new).unwrap()), &[3.0, 8.0, -0.0, 0.0, 0.0, 2.0], 0.0);
        let state = p.state().unwrap();
        assert_eq!(state.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["width", "categories.0"]);
        assert_close(&values(&state[0].1), &[3.0], 0.0);
        assert_close(&values(&state[1].1), &[-1.0, 5.0, 9.0], 0.0);
    }

    #[test]
    fn one_hot_replaces_each_column_in_place() {
        let mut p = one_hot(json!({ "columns": [0, 2] }));
        p.fit(&tiny(), &targets(4)).unwrap();
        let out = p.transform(&tiny()).unwrap();
        // [one-hot of {-1, 5, 9}, column 1, one-hot of {0, 1}]
        assert_eq!(out.size(), [4, 6]);
        #[rustfmt::skip]
        let expected = [
            0.0, 0.0, 1.0, 0.5, 0.0, 1.0,
            0.0, 1.0, 0.0, 1.5, 1.0, 0.0,
            1.0, 0.0, 0.0, 2.5, 0.0, 1.0,
            0.0, 0.0, 1.0, 3.5, 0.0, 1.0,
        ];
        assert_close(&values(&out), &expected, 0.0);
        // An unseen value gives zeros in its block.
        let new = tensor(&[4.0, 8.0, 1.0, 5.0, -2.0, 3.0], &[2, 3]);
        assert_close(
            &values(&p.transform(&new).unwrap()),
            &[0.0, 0.0, 0.0, 8.0, 0.0, 1.0, 0.0, 1.0, 0.0, -2.0, 0.0, 0.0],
            0.0,
        );
    }

    #[test]
    fn fitting_in_batches_collects_every_value() {
        let x = table(50, 3);
        let mut p = one_hot(json!({ "columns": [1, 3] }));
        p.begin_fit().unwrap();
        for start in (0..50).step_by(3) {
            let len = 3.min(50 - start);
            p.fit_batch(&x.narrow(0, start, len), &targets(len)).unwrap();
        }
        p.end_fit().unwrap();
        let state = p.state().unwrap();
        assert_eq!(
            state.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["width", "categories.1", "categories.3"]
        );
        assert_close(&values(&state[1].1), &[-3.0, 7.0, 12.0, 40.0], 0.0);
        assert_close(&values(&state[2].1), &[0.0, 1.0, 2.0, 3.0, 4.0], 0.0);
        assert_eq!(p.transform(&x).unwrap().size(), [50, 11]);
    }

    #[test]
    fn continuous_columns_are_refused_naming_the_column() {
        // Column 0 holds measurements (not integers), column 2 whole numbers of many values.
        let x = Tensor::from_slice(&(0..60).flat_map(|i| [i as f64 * 0.5, 1.0, i as f64]).collect::<Vec<_>>())
            .view([60, 3]);
        let y = targets(60);
        let err = harness::check_preprocessor::<LabelEncode>(json!({ "columns": [0, 1] }), &x, &y).unwrap_err();
        assert_eq!(
            err,
            "fit: data error: label-encode: column 0 holds 0.5 in training, not an integer category code: it looks \
             like a continuous feature; leave it out of `columns` (a csv data set gives the columns listed in its \
             `categorical` as integer codes)"
        );
        let err = harness::check_preprocessor::<OneHot>(json!({ "columns": [-1] }), &x, &y).unwrap_err();
        assert_eq!(
            err,
            "fit: data error: one-hot: column 2 takes more than 50 distinct values in training (max_categories): it \
             looks like a continuous feature or an identifier, not categories; leave it out of `columns`, or raise \
             `max_categories` if it holds that many categories"
        );
        // Counted across batches, and as many as asked for.
        let mut p = one_hot(json!({ "columns": [2], "max_categories": 20 }));
        p.begin_fit().unwrap();
        p.fit_batch(&x.narrow(0, 0, 15), &targets(15)).unwrap();
        let err = p.fit_batch(&x.narrow(0, 15, 15), &targets(15)).unwrap_err().to_string();
        assert!(err.starts_with("data error: one-hot: column 2 takes more than 20 distinct values"), "{err}");
        harness::check_preprocessor::<OneHot>(json!({ "columns": [1, 2], "max_categories": 60 }), &x, &y).unwrap();
        let err =
            harness::check_preprocessor::<OneHot>(json!({ "columns": [1], "max_categories": 0 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: max_categories: 0 is not in [1, 1000000]");
        let inf = tensor(&[f64::INFINITY, 1.0, 2.0, 1.0], &[2, 2]);
        let err = harness::check_preprocessor::<OneHot>(json!({ "columns": [0] }), &inf, &targets(2)).unwrap_err();
        assert!(err.starts_with("fit: data error: one-hot: column 0 holds inf in training, not an integer"), "{err}");
    }

    #[test]
    fn refuse_bad_configurations_shapes_and_calls() {
        let x = tiny();
        let y = targets(4);
        let err = harness::check_preprocessor::<OneHot>(json!({}), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: columns: required key of type integer[] is missing");
        let err = harness::check_preprocessor::<OneHot>(json!({ "columns": [] }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: columns: must not be empty");
        let err = harness::check_preprocessor::<LabelEncode>(json!({ "columns": [1, 1] }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: label-encode: column 1 is listed twice in `columns`");
        let err = harness::check_preprocessor::<LabelEncode>(json!({ "columns": [0, -3] }), &x, &y).unwrap_err();
        assert_eq!(
            err,
            "fit: data error: label-encode: columns 0 and -3 are the same column for features of shape [4, 3]"
        );
        let err = harness::check_preprocessor::<OneHot>(json!({ "columns": [3] }), &x, &y).unwrap_err();
        assert_eq!(err, "fit: data error: one-hot: column 3 is out of range for features of shape [4, 3]");
        let err = harness::check_preprocessor::<OneHot>(json!({ "columns": [0] }), &x.view([2, 2, 3]), &targets(2))
            .unwrap_err();
        assert_eq!(err, "fit: data error: one-hot needs tabular features [n, f], got shape [2, 2, 3]");

        let mut p = label_encode(json!({ "columns": [0] }));
        assert_eq!(
            p.transform(&x).unwrap_err().to_string(),
            "runtime error: label-encode: transform before fit (fit it on the training split or load its state)"
        );
        p.begin_fit().unwrap();
        let nan = tensor(&[f64::NAN, 1.0], &[1, 2]);
        assert_eq!(
            p.fit_batch(&nan, &targets(1)).unwrap_err().to_string(),
            "data error: label-encode: column 0 of the training features holds NaN"
        );
        assert_eq!(p.end_fit().unwrap_err().to_string(), "data error: label-encode: the fit saw no training samples");
        p.fit(&x, &y).unwrap();
        assert_eq!(
            p.transform(&x.narrow(1, 0, 2)).unwrap_err().to_string(),
            "data error: label-encode: was fitted on tabular features [n, 3], got shape [4, 2]"
        );
        let mut state = p.state().unwrap();
        state[1].0 = "categories.1".into();
        assert_eq!(
            p.load_state(state).unwrap_err().to_string(),
            "data error: label-encode: the state holds categories of columns [1], the configuration lists columns [0]"
        );
        let err = p
            .load_state(vec![
                ("width".into(), Tensor::from_slice(&[3i64])),
                ("categories.0".into(), Tensor::from_slice(&[2.0, 1.0])),
            ])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data error: label-encode: state `categories.0` is not a sorted list of distinct values"
        );
    }
}
