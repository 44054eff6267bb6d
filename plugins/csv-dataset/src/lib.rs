//! `csv`: a table of numbers, one sample per row, for classification or regression.
//!
//! Headers: `names` (a first row of column names), `sklearn` (scikit-learn's bundled tables:
//! a first row `n_samples,n_features,class names...`), or `none`.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;
use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, Dataset, DatasetInfo, Loaded, PluginError, Result, Task,
};

/// The configuration of `csv`.
#[derive(Config)]
pub struct CsvConfig {
    /// The CSV file
    #[config(exists = "file")]
    pub path: PathBuf,
    /// classification or regression
    #[config(default = "classification", one_of = ["classification", "regression"])]
    pub task: String,
    /// names (a row of column names), sklearn (n_samples,n_features,classes...) or none
    #[config(default = "names", one_of = ["names", "sklearn", "none"])]
    pub header: String,
    /// Index of the target column (negative counts from the end)
    #[config(default = -1)]
    pub target_column: i64,
    /// Cell separator (one character)
    #[config(default = ",", min_len = 1, max_len = 1)]
    pub delimiter: String,
    /// Class names in label order (default: from the header, or the labels)
    #[config(default = [])]
    pub class_names: Vec<String>,
}

pub struct CsvDataset {
    path: PathBuf,
    task: Task,
    header: String,
    target_column: i64,
    delimiter: char,
    class_names: Vec<String>,
}

/// A parsed file: the class names a scikit-learn header lists, and the rows' cells.
struct Rows {
    header_classes: Vec<String>,
    cells: Vec<Vec<String>>,
    width: usize,
}

/// Numeric features and the target column's raw text.
struct Table {
    header_classes: Vec<String>,
    features: Vec<f32>,
    targets: Vec<String>,
    n_features: usize,
}

impl CsvDataset {
    fn parse(&self, path: &Path) -> Result<Rows> {
        let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", path.display()));
        let file = File::open(path).map_err(io)?;
        let reader: Box<dyn Read> =
            if path.extension().is_some_and(|e| e == "gz") { Box::new(GzDecoder::new(file)) } else { Box::new(file) };
        let mut lines = Vec::new();
        for line in BufReader::new(reader).lines() {
            let line = line.map_err(io)?;
            if !line.trim().is_empty() {
                lines.push(line);
            }
        }
        let mut rows = lines.iter();
        let mut header_classes = Vec::new();
        match self.header.as_str() {
            "names" => {
                rows.next();
            }
            "sklearn" => {
                let first = rows.next().ok_or_else(|| PluginError::data(format!("{}: empty file", path.display())))?;
                header_classes = first.split(self.delimiter).skip(2).map(|s| s.trim().to_string()).collect();
            }
            _ => {}
        }
        let cells: Vec<Vec<String>> =
            rows.map(|l| l.split(self.delimiter).map(|c| c.trim().to_string()).collect()).collect();
        let width = cells.first().map_or(0, Vec::len);
        if width == 0 {
            return Err(PluginError::data(format!("{}: no rows", path.display())));
        }
        if let Some(i) = cells.iter().position(|r| r.len() != width) {
            return Err(PluginError::data(format!(
                "{} row {}: {} cells where the first row has {width}",
                path.display(),
                i + 1,
                cells[i].len()
            )));
        }
        Ok(Rows { header_classes, cells, width })
    }

    fn target_index(&self, width: usize) -> Result<usize> {
        let index = if self.target_column < 0 { width as i64 + self.target_column } else { self.target_column };
        usize::try_from(index).ok().filter(|&i| i < width).ok_or_else(|| {
            PluginError::config(format!(
                "target_column {} is outside the {width} columns of {}",
                self.target_column,
                self.path.display()
            ))
        })
    }

    /// Splits rows into numeric features and, when `target` is set, that column's text.
    fn table(path: &Path, rows: Rows, target: Option<usize>) -> Result<Table> {
        let mut table = Table {
            header_classes: rows.header_classes,
            features: Vec::new(),
            targets: Vec::new(),
            n_features: rows.width - target.map_or(0, |_| 1),
        };
        for (i, row) in rows.cells.into_iter().enumerate() {
            for (c, cell) in row.into_iter().enumerate() {
                if Some(c) == target {
                    table.targets.push(cell);
                } else {
                    let value = cell.parse::<f32>().map_err(|_| {
                        PluginError::data(format!(
                            "{} row {}: column {} is `{cell}`, not a number",
                            path.display(),
                            i + 1,
                            c + 1
                        ))
                    })?;
                    table.features.push(value);
                }
            }
        }
        Ok(table)
    }

    fn rows_count(table: &Table) -> i64 {
        (table.features.len() / table.n_features.max(1)) as i64
    }

    fn targets(&self, table: &Table) -> Result<(Tensor, Vec<String>)> {
        let n = table.targets.len() as i64;
        match self.task {
            Task::Regression => {
                let values: Vec<f32> =
                    table.targets.iter().map(|t| t.parse::<f32>()).collect::<Result<_, _>>().map_err(|_| {
                        PluginError::data(format!("{}: regression targets must be numbers", self.path.display()))
                    })?;
                Ok((Tensor::from_slice(&values).view([n, 1]), Vec::new()))
            }
            Task::Classification => {
                let mut names =
                    if self.class_names.is_empty() { table.header_classes.clone() } else { self.class_names.clone() };
                let all_ints = table.targets.iter().all(|t| t.parse::<i64>().is_ok());
                let labels: Vec<i64> = if all_ints {
                    let labels: Vec<i64> = table.targets.iter().map(|t| t.parse().unwrap()).collect();
                    let k = labels.iter().max().map_or(0, |m| m + 1);
                    if names.is_empty() {
                        names = (0..k).map(|c| c.to_string()).collect();
                    }
                    if labels.iter().any(|&l| l < 0 || l >= names.len() as i64) {
                        return Err(PluginError::data(format!(
                            "{}: class labels must be in [0, {})",
                            self.path.display(),
                            names.len()
                        )));
                    }
                    labels
                } else {
                    if names.is_empty() {
                        names = table.targets.clone();
                        names.sort();
                        names.dedup();
                    }
                    table
                        .targets
                        .iter()
                        .map(|t| {
                            names.iter().position(|n| n == t).map(|p| p as i64).ok_or_else(|| {
                                PluginError::data(format!("{}: unknown class `{t}`", self.path.display()))
                            })
                        })
                        .collect::<Result<_>>()?
                };
                Ok((Tensor::from_slice(&labels), names))
            }
        }
    }
}

impl Configurable for CsvDataset {
    const NAME: &'static str = "csv";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "A numeric table (CSV, optionally gzipped), one sample per row, for classification or regression";
    type Config = CsvConfig;

    fn build(config: CsvConfig, _ctx: &Context) -> Result<Self> {
        let task = match config.task.as_str() {
            "classification" => Task::Classification,
            "regression" => Task::Regression,
            other => return Err(PluginError::config(format!("task `{other}` is not classification or regression"))),
        };
        let mut chars = config.delimiter.chars();
        let (Some(delimiter), None) = (chars.next(), chars.next()) else {
            return Err(PluginError::config(format!("delimiter `{}` must be one character", config.delimiter)));
        };
        Ok(Self {
            path: config.path,
            task,
            header: config.header,
            target_column: config.target_column,
            delimiter,
            class_names: config.class_names,
        })
    }
}

impl Dataset for CsvDataset {
    fn load(&mut self) -> Result<Loaded> {
        let rows = self.parse(&self.path)?;
        let target = self.target_index(rows.width)?;
        let table = Self::table(&self.path, rows, Some(target))?;
        let n = Self::rows_count(&table);
        let features = Tensor::from_slice(&table.features).view([n, table.n_features as i64]).to_kind(Kind::Float);
        let (targets, class_names) = self.targets(&table)?;
        let feature_shape = vec![table.n_features as i64];
        let info = match self.task {
            Task::Classification => DatasetInfo::classification(feature_shape, class_names),
            Task::Regression => DatasetInfo::regression(feature_shape, 1),
        };
        Ok(Loaded { info, features, targets, test: None })
    }

    /// Rows as wide as the training table have their target column dropped; rows one cell
    /// narrower are all features.
    fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        let train_width = self.parse(&self.path)?.width;
        let rows = self.parse(path)?;
        let target = match rows.width {
            w if w == train_width => Some(self.target_index(w)?),
            w if w + 1 == train_width => None,
            w => {
                return Err(PluginError::data(format!(
                    "{}: rows have {w} cells; the training table has {train_width} (features and target)",
                    path.display()
                )))
            }
        };
        let table = Self::table(path, rows, target)?;
        Ok(Tensor::from_slice(&table.features).view([Self::rows_count(&table), table.n_features as i64]))
    }
}

gymnos_plugin_sdk::export_plugin!(dataset(CsvDataset));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_dataset_contract_on_wine_and_a_regression_table() {
        let wine = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/sklearn/wine_data.csv");
        let config = json!({ "path": wine, "header": "sklearn" });
        assert_eq!(harness::check_dataset::<super::CsvDataset>(config.clone()).unwrap(), (178, 0));
        assert_eq!(harness::check_dataset_inputs::<super::CsvDataset>(config, wine.as_ref(), &[13]).unwrap(), 178);

        let dir = std::env::temp_dir().join(format!("gymnos-csv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let table = dir.join("t.csv");
        std::fs::write(&table, "x;y\n1;2.5\n2;4.5\n3;6.5\n").unwrap();
        let config = json!({ "path": table, "task": "regression", "delimiter": ";" });
        assert_eq!(harness::check_dataset::<super::CsvDataset>(config).unwrap(), (3, 0));
        std::fs::write(&table, "x;y\n1;2.5\n2;oops\n").unwrap();
        let err = harness::check_dataset::<super::CsvDataset>(
            json!({ "path": table, "delimiter": ";", "task": "regression" }),
        )
        .unwrap_err();
        assert!(err.ends_with("regression targets must be numbers"), "{err}");
        let err =
            harness::check_dataset::<super::CsvDataset>(json!({ "path": table, "task": "ranking", "delimiter": ";;" }))
                .unwrap_err();
        assert_eq!(err, "create: configuration error: delimiter: has 2 characters; it needs length <= 1; task: \"ranking\" is not one of classification, regression");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = harness::check_dataset::<super::CsvDataset>(json!({ "path": table })).unwrap_err();
        assert_eq!(err, format!("create: configuration error: path: {} does not exist", table.display()));
    }
}
