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
    Config, Configurable, Context, DataPart, Dataset, DatasetInfo, Description, IndexedDataset, Loaded, PluginError,
    Result, Task,
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
    fn load(&mut self) -> Result<Loaded> {
        let description = self.describe()?;
        let every: Vec<u64> = (0..description.len).collect();
        let (features, targets) = self.read(DataPart::Samples, &every)?;
        Ok(Loaded { info: description.info, features, targets, test: None })
    }

    fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        IndexedDataset::read_inputs(self, path)
    }
}

gymnos_plugin_sdk::export_plugin!(indexed_dataset(CsvDataset));

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

    use std::path::{Path, PathBuf};

    use gymnos_plugin_sdk::{
        tch::{Kind, Tensor},
        ConfigSchema, Configurable, Context, DataPart, Dataset, IndexedDataset,
    };

    use super::{CsvConfig, CsvDataset};

    /// A fresh folder for one test's files, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("gymnos-csv-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        fn gzip(&self, name: &str, text: &str) -> PathBuf {
            use std::io::Write;
            let path = self.0.join(name);
            let mut encoder =
                flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
            encoder.write_all(text.as_bytes()).unwrap();
            encoder.finish().unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn wine() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/sklearn/wine_data.csv"))
    }

    fn build(config: gymnos_plugin_sdk::serde_json::Value) -> CsvDataset {
        CsvDataset::build(CsvConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    /// Every sample, read by index.
    fn read_all(dataset: &CsvDataset) -> (Tensor, Tensor) {
        let len = dataset.describe().unwrap().len;
        dataset.read(DataPart::Samples, &(0..len).collect::<Vec<_>>()).unwrap()
    }

    fn floats(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    fn ints(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(t).unwrap()
    }

    /// Both modes, on the same configuration.
    fn both_modes(config: gymnos_plugin_sdk::serde_json::Value) -> (CsvDataset, CsvDataset) {
        let mut streaming = config.clone();
        streaming["streaming"] = true.into();
        (build(config), build(streaming))
    }

    #[test]
    fn wine_reads_the_same_numbers_in_memory_and_streaming_as_a_plain_parse_gives() {
        // What the table holds, parsed independently: 13 features, then the class.
        let text = std::fs::read_to_string(wine()).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
        let expected_x: Vec<f32> =
            rows.iter().flat_map(|r| r[..13].iter().map(|c| c.parse::<f32>().unwrap())).collect();
        let expected_y: Vec<i64> = rows.iter().map(|r| r[13].parse().unwrap()).collect();
        assert_eq!(rows.len(), 178);

        let config = json!({ "path": wine(), "header": "sklearn" });
        let (mut memory, streaming) = both_modes(config.clone());
        assert!(!memory.streams() && streaming.streams());
        for dataset in [&memory, &streaming] {
            let description = dataset.describe().unwrap();
            assert_eq!(description.len, 178);
            assert_eq!(description.test_len, None);
            assert_eq!(description.info.feature_shape.to_vec(), [13]);
            let names: Vec<String> = description.info.class_names.iter().map(|n| n.to_string()).collect();
            assert_eq!(names, ["class_0", "class_1", "class_2"]);
            let (x, y) = read_all(dataset);
            assert_eq!((x.kind(), x.size()), (Kind::Float, vec![178, 13]));
            assert_eq!((y.kind(), y.size()), (Kind::Int64, vec![178]));
            assert_eq!(floats(&x), expected_x);
            assert_eq!(ints(&y), expected_y);
            assert_eq!(ints(&y.bincount::<Tensor>(None, 0)), [59, 71, 48]);
            // Any indices, in any order, give those rows.
            let picked = [177u64, 0, 90, 90, 3];
            let (px, py) = dataset.read(DataPart::Samples, &picked).unwrap();
            let index = Tensor::from_slice(&picked.map(|i| i as i64));
            assert!(px.equal(&x.index_select(0, &index)) && py.equal(&y.index_select(0, &index)));
        }
        // The 1.0 form gives the same tensors.
        let loaded = memory.load().unwrap();
        let (x, y) = read_all(&streaming);
        assert!(loaded.features.equal(&x) && loaded.targets.equal(&y) && loaded.test.is_none());

        assert_eq!(
            harness::check_indexed_dataset::<CsvDataset>(
                json!({ "path": wine(), "header": "sklearn", "streaming": true })
            )
            .unwrap(),
            (178, 0)
        );
        assert_eq!(
            harness::check_indexed_dataset::<CsvDataset>(config).unwrap_err(),
            "this configuration does not stream (`streams()` is false)"
        );
        let streaming_config = json!({ "path": wine(), "header": "sklearn", "streaming": true });
        assert_eq!(harness::check_dataset_inputs::<CsvDataset>(streaming_config, wine(), &[13]).unwrap(), 178);
    }

    #[test]
    fn streaming_reads_from_several_threads_at_once() {
        let dataset = build(json!({ "path": wine(), "header": "sklearn", "streaming": true }));
        assert!(dataset.describe().unwrap().concurrent_reads);
        let (x, y) = read_all(&dataset);
        let (x, y) = (floats(&x), ints(&y));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (dataset, x, y) = (&dataset, &x, &y);
                s.spawn(move || {
                    for i in (t..178).step_by(4) {
                        let (rx, ry) = dataset.read(DataPart::Samples, &[i]).unwrap();
                        let i = i as usize;
                        assert_eq!((floats(&rx).as_slice(), ints(&ry)[0]), (&x[i * 13..(i + 1) * 13], y[i]));
                    }
                });
            }
        });
        let err = dataset.read(DataPart::Samples, &[178]).unwrap_err();
        assert_eq!(err.to_string(), "runtime error: sample 178 asked for; the table has 178");
        let err = dataset.read(DataPart::Test, &[0]).unwrap_err();
        assert_eq!(err.to_string(), "runtime error: csv has no test split");
    }

    /// Four animals; a blank line and Windows line endings on the way.
    const ANIMALS: &str =
        "colour,size,price,kind\r\nred,1,2.5,cat\r\nblue,2,3.5,dog\r\n\r\nred,3,1.0,cat\r\ngreen,4,0.5,dog\r\n";

    #[test]
    fn text_categories_become_their_sorted_codes_and_the_target_is_found_by_name() {
        let scratch = Scratch::new("categories");
        let path = scratch.file("animals.csv", ANIMALS);
        // blue = 0, green = 1, red = 2; cat = 0, dog = 1.
        for config in [
            json!({ "path": path, "target_column": "kind", "categorical": ["colour"] }),
            json!({ "path": path, "categorical": [0] }),
            json!({ "path": path, "target_column": 3, "categorical": [-4] }),
        ] {
            let (memory, streaming) = both_modes(config.clone());
            for dataset in [&memory, &streaming] {
                let description = dataset.describe().unwrap();
                let names: Vec<String> = description.info.class_names.iter().map(|n| n.to_string()).collect();
                assert_eq!(names, ["cat", "dog"], "{config}");
                let (x, y) = read_all(dataset);
                assert_eq!(x.size(), [4, 3]);
                assert_eq!(floats(&x), [2.0, 1.0, 2.5, 0.0, 2.0, 3.5, 2.0, 3.0, 1.0, 1.0, 4.0, 0.5], "{config}");
                assert_eq!(ints(&y), [0, 1, 0, 1], "{config}");
            }
        }

        let regression =
            json!({ "path": path, "task": "regression", "target_column": "price", "categorical": ["colour", "kind"] });
        let (memory, streaming) = both_modes(regression.clone());
        for dataset in [&memory, &streaming] {
            let (x, y) = read_all(dataset);
            assert_eq!(floats(&x), [2.0, 1.0, 0.0, 0.0, 2.0, 1.0, 2.0, 3.0, 0.0, 1.0, 4.0, 1.0]);
            assert_eq!((y.kind(), y.size()), (Kind::Float, vec![4, 1]));
            assert_eq!(floats(&y), [2.5, 3.5, 1.0, 0.5]);
        }
        let mut streaming_config = regression;
        streaming_config["streaming"] = true.into();
        assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming_config).unwrap(), (4, 0));
        let streaming_config =
            json!({ "path": path, "target_column": "kind", "categorical": ["colour"], "streaming": true });
        assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming_config).unwrap(), (4, 0));
    }

    #[test]
    fn new_samples_are_coded_like_the_training_file() {
        let scratch = Scratch::new("inputs");
        let path = scratch.file("animals.csv", ANIMALS);
        let features_only = scratch.file("new.csv", "colour,size,price\nblue,7,1.5\nred,8,0\n");
        let whole_rows = scratch.file("whole.csv", "colour,size,price,kind\ngreen,5,2.0,not-a-class\n");
        let unknown = scratch.file("unknown.csv", "colour,size,price\nblue,7,1.5\npurple,1,1.0\n");
        let (memory, streaming) =
            both_modes(json!({ "path": path, "target_column": "kind", "categorical": ["colour"] }));
        for dataset in [&memory, &streaming] {
            let x = dataset.read_inputs(&features_only).unwrap();
            assert_eq!(x.size(), [2, 3]);
            assert_eq!(floats(&x), [0.0, 7.0, 1.5, 2.0, 8.0, 0.0]);
            assert_eq!(floats(&dataset.read_inputs(&whole_rows).unwrap()), [1.0, 5.0, 2.0]);
            assert_eq!(
                dataset.read_inputs(&unknown).unwrap_err().to_string(),
                format!(
                    "data error: {} line 3: column 1 (colour) is `purple`, a category the training file does not \
                     have (it has: blue, green, red)",
                    unknown.display()
                )
            );
        }
    }

    #[test]
    fn a_target_name_that_is_not_a_column_gets_one_line_naming_the_columns() {
        let scratch = Scratch::new("names");
        let path = scratch.file("animals.csv", ANIMALS);
        let expected = format!(
            "configuration error: target_column `knd` is not a column of {} (its columns: colour, size, price, kind)",
            path.display()
        );
        let config = json!({ "path": path, "target_column": "knd", "categorical": ["colour"] });
        assert_eq!(harness::check_dataset::<CsvDataset>(config.clone()).unwrap_err(), format!("load: {expected}"));
        let mut streaming = config;
        streaming["streaming"] = true.into();
        assert_eq!(
            harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(),
            format!("describe: {expected}")
        );

        let err =
            harness::check_dataset::<CsvDataset>(json!({ "path": path, "header": "none", "target_column": "kind" }))
                .unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: target_column: `kind` is a column name, but only a `names` header names \
             columns (header is `none`); give the column's index"
        );
        let err = harness::check_dataset::<CsvDataset>(json!({ "path": path, "target_column": 1.5 })).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: target_column: expected a column index (an integer) or a column name (a \
             string), found 1.5"
        );
        let err = harness::check_dataset::<CsvDataset>(json!({ "path": path, "categorical": ["colour", "kind"] }))
            .unwrap_err();
        assert_eq!(
            err,
            "load: configuration error: categorical column `kind` is the target column; class labels need no coding"
        );
        let err = harness::check_dataset::<CsvDataset>(json!({ "path": path, "categorical": [0, 9] })).unwrap_err();
        assert_eq!(
            err,
            format!("load: configuration error: categorical column 9 is outside the 4 columns of {}", path.display())
        );
    }

    #[test]
    fn a_text_cell_in_a_numeric_column_is_named_by_file_line_and_column() {
        let scratch = Scratch::new("text-cell");
        let path = scratch.file("animals.csv", ANIMALS);
        let config = json!({ "path": path, "target_column": "kind" });
        let expected = format!(
            "data error: {} line 2: column 1 (colour) is `red`, not a number (list the column in `categorical` if \
             it holds categories)",
            path.display()
        );
        assert_eq!(harness::check_dataset::<CsvDataset>(config.clone()).unwrap_err(), format!("load: {expected}"));
        let mut streaming = config;
        streaming["streaming"] = true.into();
        assert_eq!(
            harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(),
            format!("describe: {expected}")
        );

        // Without a header, columns are numbered only.
        let bare = scratch.file("bare.csv", "1,2,0\n3,x,1\n");
        let err = harness::check_dataset::<CsvDataset>(json!({ "path": bare, "header": "none" })).unwrap_err();
        assert_eq!(
            err,
            format!(
                "load: data error: {} line 2: column 2 is `x`, not a number (list the column in `categorical` if \
                 it holds categories)",
                bare.display()
            )
        );
    }

    #[test]
    fn class_labels_are_checked_against_the_class_names() {
        let scratch = Scratch::new("labels");
        let numbers = scratch.file("numbers.csv", "x,y\n1,0\n2,1\n\n3,5\n4,5\n");
        let err =
            harness::check_dataset::<CsvDataset>(json!({ "path": numbers, "class_names": ["a", "b"] })).unwrap_err();
        assert_eq!(err, format!("load: data error: {} line 5: class label 5 is not in [0, 2)", numbers.display()));
        let words = scratch.file("words.csv", "x,y\n1,cat\n2,dog\n");
        let err = harness::check_indexed_dataset::<CsvDataset>(
            json!({ "path": words, "class_names": ["cat"], "streaming": true }),
        )
        .unwrap_err();
        assert_eq!(
            err,
            format!("describe: data error: {} line 3: unknown class `dog` (classes: cat)", words.display())
        );
    }

    /// 100,000 rows `i, i / 2, i % 3` under a header; `bad` replaces row `row`'s line.
    fn big_table(scratch: &Scratch, name: &str, bad: Option<(usize, &str)>) -> PathBuf {
        let mut text = String::from("a,b,y\n");
        for i in 0..100_000usize {
            match bad {
                Some((row, line)) if row == i => text.push_str(line),
                _ => text.push_str(&format!("{i},{},{}", i as f64 / 2.0, i % 3)),
            }
            text.push('\n');
        }
        scratch.file(name, &text)
    }

    #[test]
    fn a_bad_row_near_the_end_of_a_big_file_fails_the_scan_with_its_line() {
        let scratch = Scratch::new("big");
        let good = big_table(&scratch, "good.csv", None);
        let dataset = build(json!({ "path": good, "streaming": true }));
        assert_eq!(dataset.describe().unwrap().len, 100_000);
        let (x, y) = dataset.read(DataPart::Samples, &[99_999, 0, 50_001]).unwrap();
        assert_eq!(floats(&x), [99_999.0, 49_999.5, 0.0, 0.0, 50_001.0, 25_000.5]);
        assert_eq!(ints(&y), [0, 0, 0]);
        let (x, _) = read_all(&dataset);
        let (memory_x, _) = read_all(&build(json!({ "path": good })));
        assert!(x.equal(&memory_x));

        // Row 99,990 is line 99,992: the header is line 1.
        let text_cell = big_table(&scratch, "text.csv", Some((99_990, "99990,n/a,0")));
        let err = build(json!({ "path": text_cell, "streaming": true })).describe().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "data error: {} line 99992: column 2 (b) is `n/a`, not a number (list the column in `categorical` \
                 if it holds categories)",
                text_cell.display()
            )
        );
        let wide = big_table(&scratch, "wide.csv", Some((99_998, "1,2,3,0")));
        let err = build(json!({ "path": wide, "streaming": true })).describe().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("data error: {} line 100000: 4 cells where the first row has 3", wide.display())
        );
        let label = big_table(&scratch, "label.csv", Some((99_999, "1,2,-1")));
        let err =
            harness::check_indexed_dataset::<CsvDataset>(json!({ "path": label, "streaming": true })).unwrap_err();
        assert_eq!(
            err,
            format!("describe: data error: {} line 100001: class label -1 is not in [0, 3)", label.display())
        );
    }

    #[test]
    fn gzipped_files_load_whole_but_do_not_stream() {
        let scratch = Scratch::new("gzip");
        let plain = scratch.file("animals.csv", ANIMALS);
        let gzipped = scratch.gzip("animals.csv.gz", ANIMALS);
        let config = |path: &Path| json!({ "path": path, "target_column": "kind", "categorical": ["colour"] });
        let (x, y) = read_all(&build(config(&plain)));
        let (gx, gy) = read_all(&build(config(&gzipped)));
        assert!(x.equal(&gx) && y.equal(&gy));

        let mut streaming = config(&gzipped);
        streaming["streaming"] = true.into();
        let refusal = |path: &Path| {
            format!(
                "create: configuration error: streaming: {} is gzip-compressed, and a compressed file cannot be read \
                 at a row's offset; decompress it to stream it, or set streaming to false to load it whole",
                path.display()
            )
        };
        assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(), refusal(&gzipped));
        // Told apart by its bytes too, whatever its name.
        let disguised = scratch.0.join("disguised.csv");
        std::fs::copy(&gzipped, &disguised).unwrap();
        let mut streaming = config(&disguised);
        streaming["streaming"] = true.into();
        assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(), refusal(&disguised));
    }
}
