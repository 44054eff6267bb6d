//! `csv`: a table, one sample per row, for classification or regression.
//!
//! Headers: `names` (a first row of column names), `sklearn` (scikit-learn's bundled tables:
//! a first row `n_samples,n_features,class names...`, whose counts must match the rows), or
//! `none`. The target column is given by index or, with a `names` header, by name; every other
//! column holds numbers, or text categories when listed in `categorical` (each value becomes its
//! code among the column's distinct values, sorted: 0, 1, ...).
//!
//! The text is read as people write CSV ([`records`]): quoted fields (holding the delimiter,
//! line breaks, `""` for a quote), LF, CRLF or CR line endings, a UTF-8 byte order mark. Every
//! row must have as many cells as the header names (or, without one, as the first row has);
//! number cells must be finite (`nan`, `inf`, `1e400` are refused, naming file, line and
//! column). A classification target must hold class labels: integers (`3`, `3.0`) or names,
//! of at least 2 classes; a column of non-integer numbers is refused (a regression target?), and
//! so is an integer column with more classes than rows. A column name that a `names` header
//! gives twice is refused when the configuration names it (`target_column`, `categorical`).
//!
//! By default the file (plain or gzipped) is loaded whole (refused, before it outgrows memory,
//! with a hint to stream it). With `streaming: true` it is scanned once, every row checked, and
//! only a byte offset per row is kept; training then reads the rows it asks for from the file,
//! on several threads at once, so the file may be larger than memory. Both modes turn a row into
//! the same numbers: they share the scan and the row encoding.

mod records;

use std::{
    collections::HashMap,
    fmt,
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use flate2::read::GzDecoder;
use gymnos_plugin_sdk::{
    memory,
    serde_json::{json, Value},
    tch::Tensor,
    Config, Configurable, Context, DataPart, Dataset, DatasetInfo, Description, IndexedDataset, LoadedData,
    PluginError, Result, Task,
};
use records::{ReadError, Reader, Record};

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
                let mut named = names.iter().enumerate().filter(|(_, n)| *n == name).map(|(c, _)| c);
                let c = named.next().ok_or_else(|| {
                    PluginError::config(format!(
                        "{what} `{name}` is not a column of {} (its columns: {})",
                        path.display(),
                        names.join(", ")
                    ))
                })?;
                if let Some(other) = named.next() {
                    return Err(PluginError::config(format!(
                        "{what} `{name}` is ambiguous: columns {} and {} of {} are both named `{name}`; rename one, \
                         or give the column's index",
                        c + 1,
                        other + 1,
                        path.display()
                    )));
                }
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
    /// One ASCII character.
    delimiter: u8,
    class_names: Vec<String>,
    streaming: bool,
    /// The scanned file: built by the first `describe`, `read` or `read_inputs`.
    state: OnceLock<Result<State>>,
}

/// Where a row comes from, for messages.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The line of the file a record starts on (1-based, counting every line).
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
    /// Integer labels (`3` or `3.0`), each in `[0, classes)`.
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

/// What a number cell holds.
enum Number {
    Finite(f32),
    /// A number, but NaN, an infinity, or beyond float32's range.
    NotFinite,
    /// Not a number at all.
    Text,
}

fn number(cell: &str) -> Number {
    match cell.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Number::Finite(v),
        Ok(_) => Number::NotFinite,
        Err(_) => Number::Text,
    }
}

/// A class label that is an integer: `3`, or `3.0` as some tools write integers.
fn integer_label(cell: &str) -> Option<i64> {
    if let Ok(i) = cell.parse::<i64>() {
        return Some(i);
    }
    let v = cell.parse::<f64>().ok()?;
    (v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
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

fn not_finite(path: &Path, at: At, column: &str, cell: &str) -> PluginError {
    row_error(
        path,
        at,
        format_args!(
            "{column} is `{cell}`, not a finite number (NaN, an infinity, or beyond float32's ±3.4e38); fill in or \
             drop the value"
        ),
    )
}

fn not_a_target_value(path: &Path, at: At, column: &str, cell: &str) -> PluginError {
    row_error(path, at, format_args!("{column} is `{cell}`; regression targets must be numbers"))
}

fn not_utf8(path: &Path, at: At, column: &str) -> PluginError {
    row_error(path, at, format_args!("{column} is not UTF-8 text"))
}

fn wrong_width(path: &Path, at: At, cells: usize, width: usize) -> PluginError {
    row_error(path, at, format_args!("{cells} cells where the first row has {width}"))
}

/// A feature cell's value.
fn feature(path: &Path, at: At, column: impl Fn() -> String, cell: &str) -> Result<f32> {
    match number(cell) {
        Number::Finite(v) => Ok(v),
        Number::NotFinite => Err(not_finite(path, at, &column(), cell)),
        Number::Text => Err(not_a_number(path, at, &column(), cell)),
    }
}

/// A regression target cell's value.
fn target_value(path: &Path, at: At, column: impl Fn() -> String, cell: &str) -> Result<f32> {
    match number(cell) {
        Number::Finite(v) => Ok(v),
        Number::NotFinite => Err(not_finite(path, at, &column(), cell)),
        Number::Text => Err(not_a_target_value(path, at, &column(), cell)),
    }
}

impl Schema {
    fn target(&self, path: &Path, at: At, shown: usize, cell: &str) -> Result<Target> {
        match &self.labels {
            Labels::Regression => {
                target_value(path, at, || column_label(&self.names, shown, self.target), cell).map(Target::Value)
            }
            Labels::Integers { classes } => match integer_label(cell) {
                Some(label) if (0..*classes as i64).contains(&label) => Ok(Target::Class(label)),
                _ => Err(row_error(path, at, format_args!("class label {cell} is not in [0, {classes})"))),
            },
            Labels::Names(classes) => classes.get(cell).map(|&c| Target::Class(c)).ok_or_else(|| {
                row_error(path, at, format_args!("unknown class `{cell}` (classes: {})", some_of(&self.class_names)))
            }),
        }
    }

    /// Appends the features of `record` to `features` and returns its target. `columns` gives,
    /// for each cell, the training column it is, or `None` for a cell to skip (the target
    /// column of new samples).
    fn encode(
        &self,
        path: &Path,
        at: At,
        record: &Record,
        columns: &[Option<usize>],
        features: &mut Vec<f32>,
    ) -> Result<Option<Target>> {
        if record.len() != columns.len() {
            return Err(wrong_width(path, at, record.len(), columns.len()));
        }
        let mut target = None;
        for (shown, &c) in columns.iter().enumerate() {
            let Some(c) = c else { continue };
            let label = || column_label(&self.names, shown, c);
            let cell = record.cell(shown).map_err(|_| not_utf8(path, at, &label()))?;
            if c == self.target {
                target = Some(self.target(path, at, shown, cell)?);
            } else if let Some(values) = &self.categories[c] {
                let code = values.binary_search_by(|v| v.as_str().cmp(cell)).map_err(|_| {
                    row_error(
                        path,
                        at,
                        format_args!(
                            "{} is `{cell}`, a category the training file does not have (it has: {})",
                            label(),
                            some_of(values)
                        ),
                    )
                })?;
                features.push(code as f32);
            } else {
                features.push(feature(path, at, label, cell)?);
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

fn is_gzip_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The records of a file, decompressing `.gz` files and skipping a byte order mark (counted in
/// the records' offsets).
fn open_records(path: &Path, delimiter: u8) -> Result<Reader<BufReader<Box<dyn Read>>>> {
    let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(io)?;
    let raw: Box<dyn Read> = if is_gzip_name(path) { Box::new(GzDecoder::new(file)) } else { Box::new(file) };
    let (text, skipped) = records::skip_bom(raw).map_err(io)?;
    Ok(Reader::new(BufReader::with_capacity(1 << 16, text), delimiter, skipped))
}

/// The next record of `path`; `false` at its end.
fn next_record(path: &Path, reader: &mut Reader<impl std::io::BufRead>, record: &mut Record) -> Result<bool> {
    reader.read(record).map_err(|e| match e {
        ReadError::Io(e) => PluginError::io(format!("{}: {e}", path.display())),
        ReadError::Format { line, message } => row_error(path, At::Line(line), message),
    })
}

/// The columns a scan found, set by the first row.
struct Layout {
    width: usize,
    target: usize,
    categorical: Vec<bool>,
}

/// What loading a file whole keeps of its rows while the scan learns the schema.
#[derive(Default)]
struct Sink {
    /// `[rows, n_features]`, a categorical cell as 0 until its code is known.
    features: Vec<f32>,
    /// The categorical cells' value ids, row by row.
    category_ids: Vec<u32>,
    /// Classification: each row's label id.
    label_ids: Vec<u32>,
    /// Regression: each row's target.
    values: Vec<f32>,
}

impl Sink {
    fn bytes(&self) -> u64 {
        4 * (self.features.len() + self.category_ids.len() + self.label_ids.len() + self.values.len()) as u64
    }
}

/// The id of `value` among `ids` (numbered in order of first appearance), added if new.
fn intern(ids: &mut HashMap<String, (usize, u32)>, value: &str, line: usize) -> u32 {
    if let Some(&(_, id)) = ids.get(value) {
        return id;
    }
    let id = ids.len() as u32;
    ids.insert(value.to_string(), (line, id));
    id
}

/// Checks every row of the training file as it goes by, and learns its schema.
struct Scan<'a> {
    csv: &'a CsvDataset,
    header_done: bool,
    /// The line of the header (a `names` or `sklearn` header).
    header_line: usize,
    names: Vec<String>,
    header_classes: Vec<String>,
    /// A `sklearn` header's sample and feature counts.
    counts: Option<(u64, u64)>,
    layout: Option<Layout>,
    /// Per categorical column: its distinct values (the first line each is on, and an id).
    categories: Vec<HashMap<String, (usize, u32)>>,
    /// Classification: each distinct label, the first line it is on, and its id.
    labels: HashMap<String, (usize, u32)>,
    rows: u64,
}

/// What a finished scan knows: the schema, the number of rows, and for rows kept in a [`Sink`]
/// the class of each label id and the code of each categorical value id.
struct Finished {
    schema: Schema,
    rows: u64,
    label_classes: Vec<i64>,
    category_codes: Vec<Option<Vec<u32>>>,
}

impl<'a> Scan<'a> {
    fn new(csv: &'a CsvDataset) -> Self {
        Scan {
            csv,
            header_done: csv.header == Header::None,
            header_line: 0,
            names: Vec::new(),
            header_classes: Vec::new(),
            counts: None,
            layout: None,
            categories: Vec::new(),
            labels: HashMap::new(),
            rows: 0,
        }
    }

    fn cells(record: &Record, path: &Path) -> Result<Vec<String>> {
        (0..record.len())
            .map(|c| {
                record
                    .cell(c)
                    .map(str::to_string)
                    .map_err(|_| not_utf8(path, At::Line(record.line), &format!("column {}", c + 1)))
            })
            .collect()
    }

    fn header(&mut self, record: &Record) -> Result<()> {
        let path = &self.csv.path;
        self.header_line = record.line;
        let cells = Self::cells(record, path)?;
        match self.csv.header {
            Header::Names => self.names = cells,
            Header::Sklearn => {
                let count = |i: usize| {
                    let cell = cells.get(i).map_or("", String::as_str);
                    cell.parse::<u64>().map_err(|_| {
                        row_error(
                            path,
                            At::Line(record.line),
                            format_args!(
                                "a sklearn header begins with the numbers of samples and of features, and `{cell}` is \
                                 not a count (set header to `names` if this row names the columns)"
                            ),
                        )
                    })
                };
                self.counts = Some((count(0)?, count(1)?));
                self.header_classes = cells.into_iter().skip(2).collect();
            }
            Header::None => {}
        }
        Ok(())
    }

    fn wrong_width(&self, line: usize, cells: usize, width: usize) -> PluginError {
        match self.csv.header {
            Header::Names => row_error(
                &self.csv.path,
                At::Line(line),
                format_args!("{cells} cells, but the header (line {}) names {width} columns", self.header_line),
            ),
            _ => wrong_width(&self.csv.path, At::Line(line), cells, width),
        }
    }

    /// The layout the first row sets: checked against the header, the target column and the
    /// categorical ones resolved.
    fn layout(&self, line: usize, width: usize) -> Result<Layout> {
        let path = &self.csv.path;
        if self.csv.header == Header::Names && self.names.len() != width {
            return Err(self.wrong_width(line, width, self.names.len()));
        }
        if let Some((_, features)) = self.counts {
            if features != width as u64 - 1 {
                return Err(PluginError::data(format!(
                    "{}: the sklearn header (line {}) says {features} features, but line {line} has {} (and the \
                     target: {width} cells)",
                    path.display(),
                    self.header_line,
                    width - 1
                )));
            }
        }
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
        Ok(Layout { width, target, categorical })
    }

    /// Takes one record; says whether it is a data row. With a sink, keeps the row in it.
    fn row(&mut self, record: &Record, sink: Option<&mut Sink>) -> Result<bool> {
        if !self.header_done {
            self.header_done = true;
            self.header(record)?;
            return Ok(false);
        }
        let cells = record.len();
        if self.layout.is_none() {
            let layout = self.layout(record.line, cells)?;
            self.categories = vec![HashMap::new(); cells];
            self.layout = Some(layout);
        }
        let Some(layout) = &self.layout else { unreachable!("set above") };
        if cells != layout.width {
            return Err(self.wrong_width(record.line, cells, layout.width));
        }
        let (path, at, names, task) = (&self.csv.path, At::Line(record.line), &self.names, self.csv.task);
        let mut sink = sink;
        for c in 0..cells {
            let label = || column_label(names, c, c);
            let cell = record.cell(c).map_err(|_| not_utf8(path, at, &label()))?;
            if c == layout.target {
                match task {
                    Task::Classification => {
                        let id = intern(&mut self.labels, cell, record.line);
                        if let Some(sink) = sink.as_deref_mut() {
                            sink.label_ids.push(id);
                        }
                    }
                    Task::Regression => {
                        let value = target_value(path, at, label, cell)?;
                        if let Some(sink) = sink.as_deref_mut() {
                            sink.values.push(value);
                        }
                    }
                }
            } else if layout.categorical[c] {
                let id = intern(&mut self.categories[c], cell, record.line);
                if let Some(sink) = sink.as_deref_mut() {
                    sink.features.push(0.0);
                    sink.category_ids.push(id);
                }
            } else {
                let value = feature(path, at, label, cell)?;
                if let Some(sink) = sink.as_deref_mut() {
                    sink.features.push(value);
                }
            }
        }
        self.rows += 1;
        Ok(true)
    }

    /// The class labels, checked as a classification target: each distinct label by the first
    /// line it is on. Returns the labels and class names.
    fn classes(&self, target: usize) -> Result<(Labels, Vec<String>)> {
        let path = &self.csv.path;
        let column = column_label(&self.names, target, target);
        let mut seen: Vec<(usize, &str)> = self.labels.iter().map(|(t, &(line, _))| (line, t.as_str())).collect();
        seen.sort();
        if let Some(&(line, _)) = seen.iter().find(|(_, t)| t.is_empty()) {
            return Err(row_error(
                path,
                At::Line(line),
                format_args!("{column} is empty; every row needs a class label"),
            ));
        }
        let numbers: Option<Vec<f64>> = seen.iter().map(|(_, t)| t.parse::<f64>().ok()).collect();
        if let Some(numbers) = &numbers {
            if let Some((&(line, label), _)) = seen.iter().zip(numbers).find(|(_, v)| !v.is_finite()) {
                return Err(row_error(
                    path,
                    At::Line(line),
                    format_args!("{column} is `{label}`, not a finite number; every row needs a class label"),
                ));
            }
        }
        if let [(_, only)] = seen.as_slice() {
            return Err(PluginError::data(format!(
                "{}: {column} holds one class, `{only}`, on all {} rows; classification needs at least 2 classes \
                 (is another column the target? set target_column)",
                path.display(),
                self.rows
            )));
        }
        let integers: Option<Vec<i64>> = seen.iter().map(|(_, t)| integer_label(t)).collect();
        if numbers.is_some() && integers.is_none() {
            let &(line, label) = seen.iter().find(|(_, t)| integer_label(t).is_none()).expect("a non-integer");
            return Err(PluginError::data(format!(
                "{}: {column} holds non-integer numbers (`{label}` on line {line}; {} distinct values), not class \
                 labels; set task to regression to predict it as a number, or target_column to the column of class \
                 labels",
                path.display(),
                seen.len()
            )));
        }
        let given = if self.csv.class_names.is_empty() { &self.header_classes } else { &self.csv.class_names };
        Ok(match integers {
            Some(labels) => {
                let names = if given.is_empty() {
                    let k = labels.iter().max().map_or(0, |m| m.saturating_add(1).max(0));
                    if k as u64 > self.rows {
                        return Err(PluginError::data(format!(
                            "{}: {column} holds integers up to {}, which would make {k} classes for {} rows: a \
                             quantity, not class labels? Set task to regression to predict it as a number, \
                             target_column to the column of class labels, or class_names to name the classes",
                            path.display(),
                            k - 1,
                            self.rows
                        )));
                    }
                    (0..k).map(|c| c.to_string()).collect()
                } else {
                    given.clone()
                };
                (Labels::Integers { classes: names.len() }, names)
            }
            None => {
                let names = if given.is_empty() {
                    let mut names: Vec<String> = seen.iter().map(|(_, t)| t.to_string()).collect();
                    names.sort();
                    names
                } else {
                    given.clone()
                };
                let mut index = HashMap::new();
                for (i, name) in names.iter().enumerate() {
                    index.entry(name.clone()).or_insert(i as i64);
                }
                (Labels::Names(index), names)
            }
        })
    }

    /// The schema, once every record went by: counts, class names, and every label checked.
    fn finish(self) -> Result<Finished> {
        let path = &self.csv.path;
        if !self.header_done && self.csv.header == Header::Sklearn {
            return Err(PluginError::data(format!("{}: empty file", path.display())));
        }
        let Some(Layout { width, target, categorical }) = &self.layout else {
            return Err(PluginError::data(format!("{}: no rows", path.display())));
        };
        let (width, target) = (*width, *target);
        if let Some((samples, _)) = self.counts {
            if samples != self.rows {
                return Err(PluginError::data(format!(
                    "{}: the sklearn header (line {}) says {samples} samples, but the file has {} rows",
                    path.display(),
                    self.header_line,
                    self.rows
                )));
            }
        }
        let (labels, class_names) = match self.csv.task {
            Task::Regression => (Labels::Regression, Vec::new()),
            Task::Classification => self.classes(target)?,
        };
        let mut categories = Vec::with_capacity(width);
        let mut category_codes = Vec::with_capacity(width);
        for (ids, &is_categorical) in self.categories.iter().zip(categorical) {
            if !is_categorical {
                categories.push(None);
                category_codes.push(None);
                continue;
            }
            let mut values: Vec<(&String, u32)> = ids.iter().map(|(v, &(_, id))| (v, id)).collect();
            values.sort();
            let mut codes = vec![0u32; values.len()];
            for (code, &(_, id)) in values.iter().enumerate() {
                codes[id as usize] = code as u32;
            }
            categories.push(Some(values.into_iter().map(|(v, _)| v.clone()).collect()));
            category_codes.push(Some(codes));
        }
        let schema = Schema { width, target, names: self.names.clone(), categories, labels, class_names };
        // Every distinct label, in the order of the lines they first appear on.
        let mut label_classes = vec![0i64; self.labels.len()];
        let mut first: Vec<(usize, &String, u32)> = self.labels.iter().map(|(t, &(l, id))| (l, t, id)).collect();
        first.sort();
        for (line, label, id) in first {
            if let Target::Class(class) = schema.target(path, At::Line(line), target, label)? {
                label_classes[id as usize] = class;
            }
        }
        Ok(Finished { schema, rows: self.rows, label_classes, category_codes })
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

    /// Refuses a table that is outgrowing memory while it loads (half of it: the rows become a
    /// tensor, a copy).
    fn too_big(&self, bytes: u64, line: usize) -> PluginError {
        PluginError::data(format!(
            "{}: loading the table whole takes more than {} by line {line}, and this machine has {} of memory; set \
             streaming to true to read rows as training needs them{}",
            self.path.display(),
            memory::human(u128::from(bytes)),
            memory::human(u128::from(memory::limit_bytes())),
            if is_gzip_name(&self.path) { " (decompress the file first)" } else { "" }
        ))
    }

    /// Loads the whole file (decompressing `.gz` files) and encodes every row.
    fn load_whole(&self) -> Result<State> {
        let budget = memory::limit_bytes() / 2;
        let mut scan = Scan::new(self);
        let mut sink = Sink::default();
        let mut reader = open_records(&self.path, self.delimiter)?;
        let mut record = Record::default();
        while next_record(&self.path, &mut reader, &mut record)? {
            if scan.row(&record, Some(&mut sink))? && sink.bytes() > budget {
                return Err(self.too_big(sink.bytes(), record.line));
            }
        }
        let Finished { schema, rows, label_classes, category_codes } = scan.finish()?;
        let Sink { mut features, category_ids, label_ids, values } = sink;
        // Categorical cells get their codes, now that every value is known.
        let n_features = schema.n_features();
        let coded: Vec<(usize, &Vec<u32>)> = category_codes
            .iter()
            .enumerate()
            .filter_map(|(c, codes)| Some((if c < schema.target { c } else { c - 1 }, codes.as_ref()?)))
            .collect();
        if !coded.is_empty() {
            let mut ids = category_ids.iter();
            for row in features.chunks_exact_mut(n_features) {
                for &(j, codes) in &coded {
                    row[j] = codes[*ids.next().expect("an id per categorical cell") as usize] as f32;
                }
            }
        }
        let classes = label_ids.iter().map(|&id| label_classes[id as usize]).collect();
        Ok(State { schema, len: rows, rows: Rows::Memory { features, classes, values } })
    }

    /// Scans the file once, checking every row, and keeps each row's offset.
    fn scan_file(&self) -> Result<State> {
        let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", self.path.display()));
        let file = File::open(&self.path).map_err(io)?;
        let mut scan = Scan::new(self);
        let mut offsets = Vec::new();
        let mut reader = open_records(&self.path, self.delimiter)?;
        let mut record = Record::default();
        while next_record(&self.path, &mut reader, &mut record)? {
            if scan.row(&record, None)? {
                offsets.push(record.offset);
            }
        }
        let end = reader.offset();
        let Finished { schema, rows, .. } = scan.finish()?;
        Ok(State { schema, len: rows, rows: Rows::File { file, offsets, end } })
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
        if !delimiter.is_ascii() || matches!(delimiter, '"' | '\r' | '\n') {
            return Err(PluginError::config(format!(
                "delimiter: {delimiter:?} cannot separate cells; give one ASCII character other than a quote or a line \
                 break (`,`, `;`, `|`, a tab...)"
            )));
        }
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
            delimiter: delimiter as u8,
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
        let batch = memory::bytes_of(&[indices.len() as u64, n_features as u64 + 1], 8);
        if batch.is_none_or(|b| b > u128::from(memory::limit_bytes())) {
            memory::ensure_bytes_fit(&format!("a batch of {} rows of {n_features} features", indices.len()), batch)?;
        }
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
                let changed = "did the file change since it was scanned?";
                let (mut buf, mut record) = (Vec::new(), Record::default());
                for &i in indices {
                    let start = offsets[i as usize];
                    let stop = offsets.get(i as usize + 1).copied().unwrap_or(*end);
                    buf.resize((stop - start) as usize, 0);
                    read_at(file, &mut buf, start).map_err(|e| {
                        PluginError::io(format!("{}: reading sample {i}: {e} ({changed})", self.path.display()))
                    })?;
                    let read = Reader::new(&buf[..], self.delimiter, start).read(&mut record);
                    if !matches!(read, Ok(true)) {
                        return Err(row_error(
                            &self.path,
                            At::Sample(i),
                            format_args!("no row at its offset ({changed})"),
                        ));
                    }
                    match schema.encode(&self.path, At::Sample(i), &record, &columns, &mut features)? {
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
        let mut reader = open_records(path, self.delimiter)?;
        let mut record = Record::default();
        let mut header = self.header != Header::None;
        let (mut columns, mut rows) = (None::<Vec<Option<usize>>>, 0i64);
        let mut features = Vec::new();
        while next_record(path, &mut reader, &mut record)? {
            if std::mem::take(&mut header) {
                continue;
            }
            let columns = match &columns {
                Some(columns) => columns,
                None => columns.insert(match record.len() {
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
                }),
            };
            schema.encode(path, At::Line(record.line), &record, columns, &mut features)?;
            rows += 1;
        }
        if header && self.header == Header::Sklearn {
            return Err(PluginError::data(format!("{}: empty file", path.display())));
        }
        if rows == 0 {
            return Err(PluginError::data(format!("{}: no rows", path.display())));
        }
        Ok(Tensor::from_slice(&features).view([rows, schema.n_features() as i64]))
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
