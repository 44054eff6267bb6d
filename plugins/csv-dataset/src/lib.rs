//! `csv`: a table, one sample per row, for classification or regression.
//!
//! Headers: `names` (a first row of column names), `sklearn` (scikit-learn's bundled tables:
//! a first row `n_samples,n_features,class names...`), or `none`. The target column is given
//! by index or, with a `names` header, by name; every other column holds numbers, or text
//! categories when listed in `categorical` (each value becomes its code among the column's
//! distinct values, sorted: 0, 1, ...).
//!
//! By default the file (plain or gzipped) is loaded whole. With `streaming: true` it is scanned
//! once, every row checked, and only a byte offset per row is kept; training then reads the rows
//! it asks for from the file, on several threads at once, so the file may be larger than memory.
//! Both modes turn a row into the same numbers: they share the scan and the row encoding.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use flate2::read::GzDecoder;
use gymnos_plugin_sdk::{
    serde_json::{json, Value},
    tch::Tensor,
    Config, Configurable, Context, DataPart, Dataset, DatasetInfo, Description, IndexedDataset, LoadedData,
    PluginError, Result, Task,
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
    /// The target column: its index (negative counts from the end) or, with a `names` header, its name
    #[config(default = -1, ty = "json", schema = column_schema)]
    pub target_column: Value,
    /// Cell separator (one character)
    #[config(default = ",", min_len = 1, max_len = 1)]
    pub delimiter: String,
    /// Class names in label order (default: from the header, or the labels)
    #[config(default = [])]
    pub class_names: Vec<String>,
    /// Columns of text categories (indices, or names with a `names` header): each value becomes its
    /// position among the column's distinct values sorted (0, 1, ...), for `label-encode` or `one-hot`
    #[config(default = [], ty = "json", schema = columns_schema)]
    pub categorical: Vec<Value>,
    /// Read rows from the file as training needs them instead of loading it whole, for files larger
    /// than memory (the file is scanned and checked once first; not for gzipped files)
    #[config(default = false)]
    pub streaming: bool,
}

/// JSON Schema of a column reference: an index or a name.
fn column_schema() -> Value {
    json!({ "type": ["integer", "string"] })
}

/// JSON Schema of a list of column references.
fn columns_schema() -> Value {
    json!({ "type": "array", "items": column_schema() })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    Names,
    Sklearn,
    None,
}

/// A column as the configuration names it.
#[derive(Clone, Debug, PartialEq)]
enum Column {
    /// Negative counts from the end.
    Index(i64),
    Name(String),
}

impl Column {
    fn from_json(key: &str, value: &Value, header: Header) -> Result<Self> {
        if let Some(i) = value.as_i64() {
            return Ok(Column::Index(i));
        }
        match value {
            Value::String(name) if header == Header::Names => Ok(Column::Name(name.clone())),
            Value::String(name) => Err(PluginError::config(format!(
                "{key}: `{name}` is a column name, but only a `names` header names columns (header is `{}`); give \
                 the column's index",
                if header == Header::Sklearn { "sklearn" } else { "none" }
            ))),
            other => Err(PluginError::config(format!(
                "{key}: expected a column index (an integer) or a column name (a string), found {other}"
            ))),
        }
    }

    /// The column's position among `width` columns. `what` names the key in messages.
    fn resolve(&self, what: &str, names: &[String], width: usize, path: &Path) -> Result<usize> {
        match self {
            Column::Index(i) => {
                let index = if *i < 0 { width as i64 + i } else { *i };
                usize::try_from(index).ok().filter(|&c| c < width).ok_or_else(|| {
                    PluginError::config(format!("{what} {i} is outside the {width} columns of {}", path.display()))
                })
            }
            Column::Name(name) => {
                let c = names.iter().position(|n| n == name).ok_or_else(|| {
                    PluginError::config(format!(
                        "{what} `{name}` is not a column of {} (its columns: {})",
                        path.display(),
                        names.join(", ")
                    ))
                })?;
                if c >= width {
                    return Err(PluginError::config(format!(
                        "{what} `{name}` is column {} of the header, but the rows of {} have {width} cells",
                        c + 1,
                        path.display()
                    )));
                }
                Ok(c)
            }
        }
    }
}

/// The `csv` data set: an [`IndexedDataset`] that streams when configured to, and otherwise
/// loads the file whole on the first `describe`.
pub struct CsvDataset {
    path: PathBuf,
    task: Task,
    header: Header,
    target: Column,
    categorical: Vec<Column>,
    delimiter: char,
    class_names: Vec<String>,
    streaming: bool,
    /// The scanned file: built by the first `describe`, `read` or `read_inputs`.
    state: OnceLock<Result<State>>,
}

/// Where a row comes from, for messages.
#[derive(Clone, Copy, Debug)]
enum At {
    /// A line of the file (1-based, counting every line).
    Line(usize),
    /// A sample read by index from a file scanned before.
    Sample(u64),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Sample(i) => write!(f, "sample {i}"),
        }
    }
}

/// How target cells become targets.
enum Labels {
    Regression,
    /// Integer labels, each in `[0, classes)`.
    Integers {
        classes: usize,
    },
    /// Text labels: each one's class index.
    Names(HashMap<String, i64>),
}

enum Target {
    Class(i64),
    Value(f32),
}

/// What a scan of the training file learns: enough to turn any row into numbers.
struct Schema {
    delimiter: char,
    width: usize,
    target: usize,
    /// The header's column names (a `names` header), for messages.
    names: Vec<String>,
    /// Per column: the sorted distinct values of a categorical column (a value's code is its
    /// position); `None` for numeric columns and the target.
    categories: Vec<Option<Vec<String>>>,
    labels: Labels,
    class_names: Vec<String>,
}

fn number(cell: &str) -> Option<f32> {
    cell.parse::<f32>().ok()
}

/// At most ten of `values`, for messages.
fn some_of(values: &[String]) -> String {
    let mut shown = values.iter().take(10).map(String::as_str).collect::<Vec<_>>().join(", ");
    if values.len() > 10 {
        shown.push_str(&format!(", ... ({} in all)", values.len()));
    }
    shown
}

/// `column N` (1-based, as the line shows it), with the header's name for it when there is one.
fn column_label(names: &[String], shown: usize, c: usize) -> String {
    match names.get(c).filter(|n| !n.is_empty()) {
        Some(name) => format!("column {} ({name})", shown + 1),
        None => format!("column {}", shown + 1),
    }
}

fn row_error(path: &Path, at: At, message: impl fmt::Display) -> PluginError {
    PluginError::data(format!("{} {at}: {message}", path.display()))
}

fn not_a_number(path: &Path, at: At, column: &str, cell: &str) -> PluginError {
    row_error(
        path,
        at,
        format_args!("{column} is `{cell}`, not a number (list the column in `categorical` if it holds categories)"),
    )
}

fn not_a_target_value(path: &Path, at: At, column: &str, cell: &str) -> PluginError {
    row_error(path, at, format_args!("{column} is `{cell}`; regression targets must be numbers"))
}

fn wrong_width(path: &Path, at: At, cells: usize, width: usize) -> PluginError {
    row_error(path, at, format_args!("{cells} cells where the first row has {width}"))
}

impl Schema {
    fn target(&self, path: &Path, at: At, shown: usize, cell: &str) -> Result<Target> {
        match &self.labels {
            Labels::Regression => number(cell)
                .map(Target::Value)
                .ok_or_else(|| not_a_target_value(path, at, &column_label(&self.names, shown, self.target), cell)),
            Labels::Integers { classes } => match cell.parse::<i64>() {
                Ok(label) if (0..*classes as i64).contains(&label) => Ok(Target::Class(label)),
                _ => Err(row_error(path, at, format_args!("class label {cell} is not in [0, {classes})"))),
            },
            Labels::Names(classes) => classes.get(cell).map(|&c| Target::Class(c)).ok_or_else(|| {
                row_error(path, at, format_args!("unknown class `{cell}` (classes: {})", some_of(&self.class_names)))
            }),
        }
    }

    /// Appends the features of `line` to `features` and returns its target. `columns` gives,
    /// for each cell, the training column it is, or `None` for a cell to skip (the target
    /// column of new samples).
    fn encode(
        &self,
        path: &Path,
        at: At,
        line: &str,
        columns: &[Option<usize>],
        features: &mut Vec<f32>,
    ) -> Result<Option<Target>> {
        let cells = line.split(self.delimiter).count();
        if cells != columns.len() {
            return Err(wrong_width(path, at, cells, columns.len()));
        }
        let mut target = None;
        for (shown, (cell, &c)) in line.split(self.delimiter).zip(columns).enumerate() {
            let Some(c) = c else { continue };
            let cell = cell.trim();
            if c == self.target {
                target = Some(self.target(path, at, shown, cell)?);
            } else if let Some(values) = &self.categories[c] {
                let code = values.binary_search_by(|v| v.as_str().cmp(cell)).map_err(|_| {
                    row_error(
                        path,
                        at,
                        format_args!(
                            "{} is `{cell}`, a category the training file does not have (it has: {})",
                            column_label(&self.names, shown, c),
                            some_of(values)
                        ),
                    )
                })?;
                features.push(code as f32);
            } else {
                let value =
                    number(cell).ok_or_else(|| not_a_number(path, at, &column_label(&self.names, shown, c), cell))?;
                features.push(value);
            }
        }
        Ok(target)
    }

    /// Every column, for training rows.
    fn all_columns(&self) -> Vec<Option<usize>> {
        (0..self.width).map(Some).collect()
    }

    fn n_features(&self) -> usize {
        self.width - 1
    }
}

/// Calls `f` with each non-blank line of `reader` (its number, its byte offset, its text without
/// the line ending). Returns the number of bytes read.
fn for_each_line(path: &Path, reader: impl Read, mut f: impl FnMut(usize, u64, &str) -> Result<()>) -> Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut buf = Vec::new();
    let (mut line_no, mut offset) = (0, 0u64);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Ok(offset);
        }
        line_no += 1;
        let text = std::str::from_utf8(&buf)
            .map_err(|_| PluginError::data(format!("{} line {line_no}: not UTF-8 text", path.display())))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if !text.trim().is_empty() {
            f(line_no, offset, text)?;
        }
        offset += n as u64;
    }
}

fn is_gzip_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Opens a file to read whole, decompressing `.gz` files.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    Ok(if is_gzip_name(path) { Box::new(GzDecoder::new(file)) } else { Box::new(file) })
}

/// Checks every row of the training file as it goes by, and learns its schema.
struct Scan<'a> {
    csv: &'a CsvDataset,
    header_done: bool,
    names: Vec<String>,
    header_classes: Vec<String>,
    /// Set by the first row: its width, the target column, which columns are categorical.
    layout: Option<(usize, usize, Vec<bool>)>,
    categories: Vec<BTreeSet<String>>,
    /// Classification: each distinct label and the first line it is on.
    labels: HashMap<String, usize>,
    rows: u64,
}

impl<'a> Scan<'a> {
    fn new(csv: &'a CsvDataset) -> Self {
        Scan {
            csv,
            header_done: csv.header == Header::None,
            names: Vec::new(),
            header_classes: Vec::new(),
            layout: None,
            categories: Vec::new(),
            labels: HashMap::new(),
            rows: 0,
        }
    }

    fn cells<'l>(&self, line: &'l str) -> impl Iterator<Item = String> + 'l {
        line.split(self.csv.delimiter).map(|c| c.trim().to_string())
    }

    /// The layout the first row sets: the target column and the categorical ones, resolved.
    fn layout(&self, width: usize) -> Result<(usize, usize, Vec<bool>)> {
        let path = &self.csv.path;
        let target = self.csv.target.resolve("target_column", &self.names, width, path)?;
        let mut categorical = vec![false; width];
        for column in &self.csv.categorical {
            let c = column.resolve("categorical column", &self.names, width, path)?;
            if c == target {
                return Err(PluginError::config(format!(
                    "categorical column {} is the target column; class labels need no coding",
                    match column {
                        Column::Index(i) => i.to_string(),
                        Column::Name(n) => format!("`{n}`"),
                    }
                )));
            }
            categorical[c] = true;
        }
        Ok((width, target, categorical))
    }

    /// Takes one non-blank line; says whether it is a data row.
    fn line(&mut self, line_no: usize, text: &str) -> Result<bool> {
        if !self.header_done {
            self.header_done = true;
            match self.csv.header {
                Header::Names => self.names = self.cells(text).collect(),
                Header::Sklearn => self.header_classes = self.cells(text).skip(2).collect(),
                Header::None => {}
            }
            return Ok(false);
        }
        let delimiter = self.csv.delimiter;
        let cells = text.split(delimiter).count();
        if self.layout.is_none() {
            let layout = self.layout(cells)?;
            self.categories = vec![BTreeSet::new(); cells];
            self.layout = Some(layout);
        }
        let Some((width, target, categorical)) = &self.layout else { unreachable!("set above") };
        let (path, at) = (&self.csv.path, At::Line(line_no));
        if cells != *width {
            return Err(wrong_width(path, at, cells, *width));
        }
        for (c, cell) in text.split(delimiter).enumerate() {
            let cell = cell.trim();
            if c == *target {
                match self.csv.task {
                    Task::Classification => {
                        if !self.labels.contains_key(cell) {
                            self.labels.insert(cell.to_string(), line_no);
                        }
                    }
                    Task::Regression => {
                        if number(cell).is_none() {
                            return Err(not_a_target_value(path, at, &column_label(&self.names, c, c), cell));
                        }
                    }
                }
            } else if categorical[c] {
                if !self.categories[c].contains(cell) {
                    self.categories[c].insert(cell.to_string());
                }
            } else if number(cell).is_none() {
                return Err(not_a_number(path, at, &column_label(&self.names, c, c), cell));
            }
        }
        self.rows += 1;
        Ok(true)
    }

    /// The schema, once every line went by: class names, and every label checked.
    fn finish(self) -> Result<(Schema, u64)> {
        let path = &self.csv.path;
        if !self.header_done && self.csv.header == Header::Sklearn {
            return Err(PluginError::data(format!("{}: empty file", path.display())));
        }
        let Some((width, target, categorical)) = self.layout else {
            return Err(PluginError::data(format!("{}: no rows", path.display())));
        };
        let categories = self
            .categories
            .into_iter()
            .zip(categorical)
            .map(|(values, is_categorical)| is_categorical.then(|| values.into_iter().collect()))
            .collect();
        let (labels, class_names) = match self.csv.task {
            Task::Regression => (Labels::Regression, Vec::new()),
            Task::Classification => {
                let given =
                    if self.csv.class_names.is_empty() { self.header_classes } else { self.csv.class_names.clone() };
                let integers: Option<Vec<i64>> = self.labels.keys().map(|t| t.parse::<i64>().ok()).collect();
                match integers {
                    Some(labels) => {
                        let names = if given.is_empty() {
                            let k = labels.iter().max().map_or(0, |m| m + 1);
                            (0..k).map(|c| c.to_string()).collect()
                        } else {
                            given
                        };
                        (Labels::Integers { classes: names.len() }, names)
                    }
                    None => {
                        let names = if given.is_empty() {
                            let mut names: Vec<String> = self.labels.keys().cloned().collect();
                            names.sort();
                            names
                        } else {
                            given
                        };
                        let mut index = HashMap::new();
                        for (i, name) in names.iter().enumerate() {
                            index.entry(name.clone()).or_insert(i as i64);
                        }
                        (Labels::Names(index), names)
                    }
                }
            }
        };
        let schema =
            Schema { delimiter: self.csv.delimiter, width, target, names: self.names, categories, labels, class_names };
        // Every distinct label, in the order of the lines they first appear on.
        let mut first: Vec<(&usize, &String)> = self.labels.iter().map(|(t, line)| (line, t)).collect();
        first.sort();
        for (&line, label) in first {
            schema.target(path, At::Line(line), target, label)?;
        }
        Ok((schema, self.rows))
    }
}

/// Where the rows are.
enum Rows {
    /// Loaded whole: features `[len, n_features]` row-major, and targets.
    Memory { features: Vec<f32>, classes: Vec<i64>, values: Vec<f32> },
    /// Streaming: each row's byte offset in the file (rows end where the next begins, the last
    /// at `end`).
    File { file: File, offsets: Vec<u64>, end: u64 },
}

struct State {
    schema: Schema,
    len: u64,
    rows: Rows,
}

/// Reads `buf.len()` bytes at `offset`, from any thread.
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Reads `buf.len()` bytes at `offset`, from any thread.
#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

impl CsvDataset {
    fn state(&self) -> Result<&State> {
        let state = self.state.get_or_init(|| if self.streaming { self.scan_file() } else { self.load_whole() });
        state.as_ref().map_err(Clone::clone)
    }

    /// Loads the whole file (decompressing `.gz` files) and encodes every row.
    fn load_whole(&self) -> Result<State> {
        let mut scan = Scan::new(self);
        let mut lines = Vec::new();
        for_each_line(&self.path, open(&self.path)?, |line_no, _, text| {
            if scan.line(line_no, text)? {
                lines.push((line_no, text.to_string()));
            }
            Ok(())
        })?;
        let (schema, len) = scan.finish()?;
        let columns = schema.all_columns();
        let mut features = Vec::with_capacity(lines.len() * schema.n_features());
        let (mut classes, mut values) = (Vec::new(), Vec::new());
        for (line_no, text) in lines {
            match schema.encode(&self.path, At::Line(line_no), &text, &columns, &mut features)? {
                Some(Target::Class(c)) => classes.push(c),
                Some(Target::Value(v)) => values.push(v),
                None => unreachable!("training rows have the target column"),
            }
        }
        Ok(State { schema, len, rows: Rows::Memory { features, classes, values } })
    }

    /// Scans the file once, checking every row, and keeps each row's offset.
    fn scan_file(&self) -> Result<State> {
        let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", self.path.display()));
        let file = File::open(&self.path).map_err(io)?;
        let mut scan = Scan::new(self);
        let mut offsets = Vec::new();
        let end = for_each_line(&self.path, &file, |line_no, offset, text| {
            if scan.line(line_no, text)? {
                offsets.push(offset);
            }
            Ok(())
        })?;
        let (schema, len) = scan.finish()?;
        Ok(State { schema, len, rows: Rows::File { file, offsets, end } })
    }

    fn info(&self, schema: &Schema) -> DatasetInfo {
        let feature_shape = vec![schema.n_features() as i64];
        match self.task {
            Task::Classification => DatasetInfo::classification(feature_shape, schema.class_names.clone()),
            Task::Regression => DatasetInfo::regression(feature_shape, 1),
        }
    }

    fn targets(&self, classes: Vec<i64>, values: Vec<f32>) -> Tensor {
        match self.task {
            Task::Classification => Tensor::from_slice(&classes),
            Task::Regression => Tensor::from_slice(&values).view([values.len() as i64, 1]),
        }
    }
}

impl Configurable for CsvDataset {
    const NAME: &'static str = "csv";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "A table (CSV, optionally gzipped) of numbers and text categories, one sample per row, for classification \
         or regression; loaded whole, or streamed from the file";
    type Config = CsvConfig;

    fn build(config: CsvConfig, _ctx: &Context) -> Result<Self> {
        let task = match config.task.as_str() {
            "classification" => Task::Classification,
            "regression" => Task::Regression,
            other => return Err(PluginError::config(format!("task `{other}` is not classification or regression"))),
        };
        let header = match config.header.as_str() {
            "names" => Header::Names,
            "sklearn" => Header::Sklearn,
            "none" => Header::None,
            other => return Err(PluginError::config(format!("header `{other}` is not names, sklearn or none"))),
        };
        let mut chars = config.delimiter.chars();
        let (Some(delimiter), None) = (chars.next(), chars.next()) else {
            return Err(PluginError::config(format!("delimiter `{}` must be one character", config.delimiter)));
        };
        let target = Column::from_json("target_column", &config.target_column, header)?;
        let categorical = config
            .categorical
            .iter()
            .enumerate()
            .map(|(i, v)| Column::from_json(&format!("categorical[{i}]"), v, header))
            .collect::<Result<_>>()?;
        if config.streaming {
            let mut magic = [0u8; 2];
            let gzip_bytes = File::open(&config.path)
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok_and(|()| magic == [0x1f, 0x8b]);
            if gzip_bytes || is_gzip_name(&config.path) {
                return Err(PluginError::config(format!(
                    "streaming: {} is gzip-compressed, and a compressed file cannot be read at a row's offset; \
                     decompress it to stream it, or set streaming to false to load it whole",
                    config.path.display()
                )));
            }
        }
        Ok(Self {
            path: config.path,
            task,
            header,
            target,
            categorical,
            delimiter,
            class_names: config.class_names,
            streaming: config.streaming,
            state: OnceLock::new(),
        })
    }
}

impl IndexedDataset for CsvDataset {
    /// Loads the file whole, or (streaming) scans it: every row is checked either way.
    fn describe(&self) -> Result<Description> {
        let state = self.state()?;
        Ok(Description { info: self.info(&state.schema), len: state.len, test_len: None, concurrent_reads: true })
    }

    fn read(&self, part: DataPart, indices: &[u64]) -> Result<(Tensor, Tensor)> {
        if part == DataPart::Test {
            return Err(PluginError::runtime("csv has no test split"));
        }
        let state = self.state()?;
        if let Some(i) = indices.iter().find(|&&i| i >= state.len) {
            return Err(PluginError::runtime(format!("sample {i} asked for; the table has {}", state.len)));
        }
        let schema = &state.schema;
        let n_features = schema.n_features();
        let mut features = Vec::with_capacity(indices.len() * n_features);
        let (mut classes, mut values) = (Vec::new(), Vec::new());
        match &state.rows {
            Rows::Memory { features: all, classes: all_classes, values: all_values } => {
                for &i in indices {
                    let i = i as usize;
                    features.extend_from_slice(&all[i * n_features..(i + 1) * n_features]);
                    match self.task {
                        Task::Classification => classes.push(all_classes[i]),
                        Task::Regression => values.push(all_values[i]),
                    }
                }
            }
            Rows::File { file, offsets, end } => {
                let columns = schema.all_columns();
                let mut buf = Vec::new();
                for &i in indices {
                    let start = offsets[i as usize];
                    let stop = offsets.get(i as usize + 1).copied().unwrap_or(*end);
                    buf.resize((stop - start) as usize, 0);
                    read_at(file, &mut buf, start).map_err(|e| {
                        PluginError::io(format!(
                            "{}: reading sample {i}: {e} (did the file change since it was scanned?)",
                            self.path.display()
                        ))
                    })?;
                    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
                    let line = std::str::from_utf8(line).map_err(|_| {
                        PluginError::data(format!("{} sample {i}: not UTF-8 text", self.path.display()))
                    })?;
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    match schema.encode(&self.path, At::Sample(i), line, &columns, &mut features)? {
                        Some(Target::Class(c)) => classes.push(c),
                        Some(Target::Value(v)) => values.push(v),
                        None => unreachable!("training rows have the target column"),
                    }
                }
            }
        }
        let features = Tensor::from_slice(&features).view([indices.len() as i64, n_features as i64]);
        Ok((features, self.targets(classes, values)))
    }

    /// Rows as wide as the training table have their target column dropped; rows one cell
    /// narrower are all features. Categories are coded as in the training file.
    fn read_inputs(&self, path: &Path) -> Result<Tensor> {
        let schema = &self.state()?.schema;
        let mut header = self.header != Header::None;
        let mut lines = Vec::new();
        for_each_line(path, open(path)?, |line_no, _, text| {
            if std::mem::take(&mut header) {
                return Ok(());
            }
            lines.push((line_no, text.to_string()));
            Ok(())
        })?;
        if header && self.header == Header::Sklearn {
            return Err(PluginError::data(format!("{}: empty file", path.display())));
        }
        let Some((_, first)) = lines.first() else {
            return Err(PluginError::data(format!("{}: no rows", path.display())));
        };
        let columns: Vec<Option<usize>> = match first.split(self.delimiter).count() {
            // The target cell of a full row is dropped unread, as training drops it from the features.
            w if w == schema.width => (0..w).map(|c| (c != schema.target).then_some(c)).collect(),
            w if w + 1 == schema.width => (0..schema.width).filter(|&c| c != schema.target).map(Some).collect(),
            w => {
                return Err(PluginError::data(format!(
                    "{}: rows have {w} cells; the training table has {} (features and target)",
                    path.display(),
                    schema.width
                )))
            }
        };
        let mut features = Vec::with_capacity(lines.len() * schema.n_features());
        for (line_no, text) in &lines {
            schema.encode(path, At::Line(*line_no), text, &columns, &mut features)?;
        }
        Ok(Tensor::from_slice(&features).view([lines.len() as i64, schema.n_features() as i64]))
    }

    fn streams(&self) -> bool {
        self.streaming
    }
}

/// The 1.0 form, as the SDK derives it for the `indexed_dataset` export: every sample read
/// through `read`. Implemented so that the type also serves where a [`Dataset`] is expected.
impl Dataset for CsvDataset {
    fn load(&mut self) -> Result<LoadedData> {
        let description = self.describe()?;
        let every: Vec<u64> = (0..description.len).collect();
        let (features, targets) = self.read(DataPart::Samples, &every)?;
        Ok(LoadedData { info: description.info, features, targets, test: None })
    }

    fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        IndexedDataset::read_inputs(self, path)
    }
}

gymnos_plugin_sdk::export_plugin!(indexed_dataset(CsvDataset));

#[cfg(test)]
mod tests;
