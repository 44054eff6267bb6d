//! Writes TensorBoard event files (`events.out.tfevents.*`) without TensorFlow or protoc.
//!
//! An event file is a sequence of TFRecords, each holding one serialized `tensorboard.Event`
//! protobuf. The messages below are hand-written `prost` structs covering only the fields this
//! writer sets; their field numbers were checked against the descriptors compiled into the
//! `tensorboard` 2.21.0 Python package (`tensorboard/compat/proto/*_pb2.py`,
//! `tensorboard/plugins/hparams/*_pb2.py`), which is what TensorBoard reads the files with.
//!
//! ```ignore
//! let mut w = EventWriter::create(Path::new("runs/exp1"))?;
//! let t = unix_time_now();
//! w.scalar("train/loss", 1, 0.5, t)?;
//! w.text("config", 0, "{\"lr\": 0.01}", t)?;
//! w.hparams(&[("lr".into(), HParamValue::Number(0.01))], &["epoch/val_accuracy".into()], t)?;
//! w.hparams_end(SessionStatus::Success, t)?;
//! w.flush()?;
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

/// The version string TensorBoard expects in a file's first event; version 2 tells it that a
/// step going backwards is not a restart (restarts are marked by `SessionLog.START` instead).
const FILE_VERSION: &str = "brain.Event:2";

/// Tags and plugin names the hparams plugin looks for (`tensorboard/plugins/hparams/metadata.py`).
const HPARAMS_PLUGIN: &str = "hparams";
const HPARAMS_EXPERIMENT_TAG: &str = "_hparams_/experiment";
const HPARAMS_SESSION_START_TAG: &str = "_hparams_/session_start_info";
const HPARAMS_SESSION_END_TAG: &str = "_hparams_/session_end_info";
/// `metadata.PLUGIN_DATA_VERSION`: the plugin rejects any other version.
const HPARAMS_PLUGIN_DATA_VERSION: i32 = 0;
const TEXT_PLUGIN: &str = "text";

/// Distinguishes writers created by this process in the same second, as TensorFlow's writer does.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The value of one hyperparameter, as the hparams plugin can show it.
#[derive(Clone, Debug, PartialEq)]
pub enum HParamValue {
    Bool(bool),
    Number(f64),
    String(String),
}

/// How a training session ended, for the hparams plugin's "Session status" column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    Unknown,
    Success,
    Failure,
    Running,
}

/// Appends events to one new event file. Writes are buffered; call [`EventWriter::flush`] to
/// make them visible to readers (dropping the writer flushes too, but ignores errors).
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `events.out.tfevents.<unix secs>.<hostname>.<pid>.<n>` in `dir` (creating `dir`
    /// and its parents) and writes the file-version event TensorBoard expects first.
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let now = unix_time_now();
        let host = hostname();
        loop {
            let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("events.out.tfevents.{}.{host}.{}.{n}", now as u64, std::process::id());
            let path = dir.join(name);
            // `create_new` so that another process (same host name and pid in a container, say)
            // never has its file truncated: on a clash, take the next number.
            let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let mut writer = EventWriter { out: BufWriter::new(file), path };
            writer.write_event(&Event {
                wall_time: now,
                step: 0,
                what: Some(What::FileVersion(FILE_VERSION.into())),
            })?;
            // Flushed at once so that a reader finds a valid file even before the first summary.
            writer.flush()?;
            return Ok(writer);
        }
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs a scalar for the SCALARS tab as a `simple_value`, the compact form TensorBoard's loader
    /// turns into a scalar tensor itself.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32, wall_time: f64) -> io::Result<()> {
        let value = SummaryValue { tag: tag.into(), metadata: None, value: Some(Kind::SimpleValue(value)) };
        self.write_summary(value, step, wall_time)
    }

    /// Logs text for the TEXT tab (rendered as Markdown): a scalar string tensor tagged with the
    /// "text" plugin, as `tf.summary.text` writes it.
    pub fn text(&mut self, tag: &str, step: i64, text: &str, wall_time: f64) -> io::Result<()> {
        let tensor = TensorProto {
            dtype: DataType::String as i32,
            // No dimensions: a rank-0 (scalar) tensor holding one string.
            tensor_shape: Some(TensorShapeProto { dim: Vec::new() }),
            float_val: Vec::new(),
            string_val: vec![text.as_bytes().to_vec()],
        };
        // The text plugin's content is a `TextPluginData { version: 0 }`, which encodes to nothing.
        let metadata = plugin_metadata(TEXT_PLUGIN, Vec::new());
        let value = SummaryValue { tag: tag.into(), metadata: Some(metadata), value: Some(Kind::Tensor(tensor)) };
        self.write_summary(value, step, wall_time)
    }

    /// Logs hyperparameters for the HPARAMS tab: an experiment summary declaring the
    /// hyperparameters and the scalar tags to show as metrics, then the session's start info
    /// holding their values. Metric tags name scalars logged to this same run.
    pub fn hparams(
        &mut self,
        hparams: &[(String, HParamValue)],
        metric_tags: &[String],
        wall_time: f64,
    ) -> io::Result<()> {
        let mut values = BTreeMap::new();
        let mut hparam_infos = Vec::with_capacity(hparams.len());
        for (name, value) in hparams {
            let (kind, data_type) = match value {
                HParamValue::Bool(b) => (ValueKind::Bool(*b), HParamDataType::Bool),
                HParamValue::Number(x) => (ValueKind::Number(*x), HParamDataType::Float64),
                HParamValue::String(s) => (ValueKind::String(s.clone()), HParamDataType::String),
            };
            if values.insert(name.clone(), ProtoValue { kind: Some(kind) }).is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("hyperparameter {name:?} given twice"),
                ));
            }
            hparam_infos.push(HParamInfo { name: name.clone(), r#type: data_type as i32 });
        }
        let metric_infos = metric_tags
            .iter()
            .map(|tag| MetricInfo { name: Some(MetricName { group: String::new(), tag: tag.clone() }) })
            .collect();
        let experiment = Experiment { time_created_secs: wall_time, hparam_infos, metric_infos };
        self.write_hparams(HPARAMS_EXPERIMENT_TAG, HParamsData::Experiment(experiment), wall_time)?;
        let start = SessionStartInfo { hparams: values, group_name: String::new(), start_time_secs: wall_time };
        self.write_hparams(HPARAMS_SESSION_START_TAG, HParamsData::SessionStartInfo(start), wall_time)
    }

    /// Logs the session's end, with its status, for the HPARAMS tab.
    pub fn hparams_end(&mut self, status: SessionStatus, wall_time: f64) -> io::Result<()> {
        let status = match status {
            SessionStatus::Unknown => Status::Unknown,
            SessionStatus::Success => Status::Success,
            SessionStatus::Failure => Status::Failure,
            SessionStatus::Running => Status::Running,
        };
        let end = SessionEndInfo { status: status as i32, end_time_secs: wall_time };
        self.write_hparams(HPARAMS_SESSION_END_TAG, HParamsData::SessionEndInfo(end), wall_time)
    }

    /// Hands everything written so far to the operating system, where readers see it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The hparams plugin keeps its data in the summary metadata; like TensorBoard's own writer,
    /// the value carries an empty float tensor because a summary value must hold some data.
    fn write_hparams(&mut self, tag: &str, data: HParamsData, wall_time: f64) -> io::Result<()> {
        let content = HParamsPluginData { version: HPARAMS_PLUGIN_DATA_VERSION, data: Some(data) }.encode_to_vec();
        let null_tensor = TensorProto {
            dtype: DataType::Float as i32,
            tensor_shape: Some(TensorShapeProto { dim: vec![Dim { size: 0, name: String::new() }] }),
            float_val: Vec::new(),
            string_val: Vec::new(),
        };
        let metadata = plugin_metadata(HPARAMS_PLUGIN, content);
        let value = SummaryValue { tag: tag.into(), metadata: Some(metadata), value: Some(Kind::Tensor(null_tensor)) };
        self.write_summary(value, 0, wall_time)
    }

    fn write_summary(&mut self, value: SummaryValue, step: i64, wall_time: f64) -> io::Result<()> {
        self.write_event(&Event { wall_time, step, what: Some(What::Summary(Summary { value: vec![value] })) })
    }

    fn write_event(&mut self, event: &Event) -> io::Result<()> {
        write_record(&mut self.out, &event.encode_to_vec())
    }
}

/// Seconds since the Unix epoch, the unit of every `wall_time`.
pub fn unix_time_now() -> f64 {
    // A clock before 1970 is a broken clock; 0 keeps the file readable.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Metadata that routes a summary to a plugin. The data class is set as TensorBoard's loader
/// would infer it for these plugins (`dataclass_compat.py`), so nothing depends on that step.
fn plugin_metadata(plugin_name: &str, content: Vec<u8>) -> SummaryMetadata {
    SummaryMetadata {
        plugin_data: Some(PluginData { plugin_name: plugin_name.into(), content }),
        display_name: String::new(),
        summary_description: String::new(),
        data_class: DataClass::Tensor as i32,
    }
}

/// The host name for the file name, which TensorBoard shows nowhere but people read in listings.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    // Keep the name a single path component made of ordinary characters (dots as in TensorFlow's
    // own file names; no separator can slip in).
    let ordinary = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let name: String = raw.trim().chars().map(|c| if ordinary(c) { c } else { '_' }).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Writes one TFRecord: u64 LE length, masked CRC32C of those 8 bytes, the data, masked CRC32C
/// of the data.
fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// TFRecord's CRC masking: a CRC of data that itself contains CRCs is weak, so it is rotated
/// and offset (`tensorflow/core/lib/hash/crc32c.h`).
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

// The protobuf messages, each limited to the fields written above. Fields are declared in
// field-number order so the encoding matches what Python's protobuf produces byte for byte.

/// `tensorboard.Event` (tensorboard/compat/proto/event.proto).
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorboard.Summary` (summary.proto).
#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value`.
#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Kind", tags = "2, 8")]
    value: Option<Kind>,
}

/// `Summary.Value.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// `tensorboard.SummaryMetadata`.
#[derive(Clone, PartialEq, Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
    #[prost(string, tag = "2")]
    display_name: String,
    #[prost(string, tag = "3")]
    summary_description: String,
    #[prost(enumeration = "DataClass", tag = "4")]
    data_class: i32,
}

/// `tensorboard.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    content: Vec<u8>,
}

/// `tensorboard.DataClass` (summary.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
enum DataClass {
    Unknown = 0,
    Scalar = 1,
    Tensor = 2,
    BlobSequence = 3,
}

/// `tensorboard.TensorProto` (tensor.proto).
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(enumeration = "DataType", tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShapeProto>,
    #[prost(float, repeated, tag = "5")]
    float_val: Vec<f32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    string_val: Vec<Vec<u8>>,
}

/// `tensorboard.DataType` (types.proto), the values used here: `DT_INVALID`, `DT_FLOAT`, `DT_STRING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
enum DataType {
    Invalid = 0,
    Float = 1,
    String = 7,
}

/// `tensorboard.TensorShapeProto` (tensor_shape.proto).
#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
}

/// `tensorboard.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
    #[prost(string, tag = "2")]
    name: String,
}

/// `tensorboard.hparams.HParamsPluginData` (plugins/hparams/plugin_data.proto).
#[derive(Clone, PartialEq, Message)]
struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    version: i32,
    #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
    data: Option<HParamsData>,
}

/// `HParamsPluginData.data`.
#[derive(Clone, PartialEq, prost::Oneof)]
enum HParamsData {
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `tensorboard.hparams.Experiment` (plugins/hparams/api.proto).
#[derive(Clone, PartialEq, Message)]
struct Experiment {
    #[prost(double, tag = "3")]
    time_created_secs: f64,
    #[prost(message, repeated, tag = "4")]
    hparam_infos: Vec<HParamInfo>,
    #[prost(message, repeated, tag = "5")]
    metric_infos: Vec<MetricInfo>,
}

/// `tensorboard.hparams.HParamInfo`.
#[derive(Clone, PartialEq, Message)]
struct HParamInfo {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(enumeration = "HParamDataType", tag = "4")]
    r#type: i32,
}

/// `tensorboard.hparams.DataType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
enum HParamDataType {
    Unset = 0,
    String = 1,
    Bool = 2,
    Float64 = 3,
}

/// `tensorboard.hparams.MetricInfo`.
#[derive(Clone, PartialEq, Message)]
struct MetricInfo {
    #[prost(message, optional, tag = "1")]
    name: Option<MetricName>,
}

/// `tensorboard.hparams.MetricName`: an empty group means the session's own run.
#[derive(Clone, PartialEq, Message)]
struct MetricName {
    #[prost(string, tag = "1")]
    group: String,
    #[prost(string, tag = "2")]
    tag: String,
}

/// `tensorboard.hparams.SessionStartInfo` (plugin_data.proto). A `BTreeMap` so the encoding
/// does not depend on hash order.
#[derive(Clone, PartialEq, Message)]
struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    hparams: BTreeMap<String, ProtoValue>,
    #[prost(string, tag = "4")]
    group_name: String,
    #[prost(double, tag = "5")]
    start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`.
#[derive(Clone, PartialEq, Message)]
struct SessionEndInfo {
    #[prost(enumeration = "Status", tag = "1")]
    status: i32,
    #[prost(double, tag = "2")]
    end_time_secs: f64,
}

/// `tensorboard.hparams.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
enum Status {
    Unknown = 0,
    Success = 1,
    Failure = 2,
    Running = 3,
}

/// `google.protobuf.Value` (struct.proto), without the null, struct and list kinds.
#[derive(Clone, PartialEq, Message)]
struct ProtoValue {
    #[prost(oneof = "ValueKind", tags = "2, 3, 4")]
    kind: Option<ValueKind>,
}

/// `google.protobuf.Value.kind`: `number_value`, `string_value`, `bool_value`.
#[derive(Clone, PartialEq, prost::Oneof)]
enum ValueKind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed with TensorBoard's own Python implementation
    // (`tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c` and
    // `tensorboard.summary.writer.record_writer.RecordWriter`, tensorboard 2.21.0).

    #[test]
    fn crc32c_check_value() {
        // The standard CRC-32C check value, to be sure the crate computes Castagnoli's CRC.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn masked_crc32c_matches_tensorflow() {
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(b"hello"), 0x191c_1fbb);
        assert_eq!(masked_crc32c(&0u64.to_le_bytes()), 0x0798_0329);
        assert_eq!(masked_crc32c(&5u64.to_le_bytes()), 0x3e04_b2ea);
        assert_eq!(masked_crc32c(&300u64.to_le_bytes()), 0x9d5b_fef2);
    }

    #[test]
    fn record_framing() {
        let mut out = Vec::new();
        write_record(&mut out, b"hello").unwrap();
        let mut expected = 5u64.to_le_bytes().to_vec();
        expected.extend_from_slice(&0x3e04_b2eau32.to_le_bytes());
        expected.extend_from_slice(b"hello");
        expected.extend_from_slice(&0x191c_1fbbu32.to_le_bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn file_version_record_matches_tensorboard_writer() {
        // `RecordWriter.write(Event(wall_time=1700000000.25, file_version="brain.Event:2"))`.
        let expected: [u8; 40] = [
            0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa3, 0x7f, 0x4b, 0x22, 0x09, 0x00, 0x00, 0x10, 0x40, 0xfc,
            0x54, 0xd9, 0x41, 0x1a, 0x0d, 0x62, 0x72, 0x61, 0x69, 0x6e, 0x2e, 0x45, 0x76, 0x65, 0x6e, 0x74, 0x3a, 0x32,
            0x33, 0x8d, 0x2f, 0xe9,
        ];
        let event = Event { wall_time: 1_700_000_000.25, step: 0, what: Some(What::FileVersion(FILE_VERSION.into())) };
        let mut out = Vec::new();
        write_record(&mut out, &event.encode_to_vec()).unwrap();
        assert_eq!(out, expected);
    }

    /// Splits a file into its records, checking both CRCs of each.
    fn read_records(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        while !bytes.is_empty() {
            let (len, rest) = bytes.split_at(8);
            let (len_crc, rest) = rest.split_at(4);
            assert_eq!(masked_crc32c(len).to_le_bytes(), len_crc);
            let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
            let (data, rest) = rest.split_at(len);
            let (data_crc, rest) = rest.split_at(4);
            assert_eq!(masked_crc32c(data).to_le_bytes(), data_crc);
            records.push(data.to_vec());
            bytes = rest;
        }
        records
    }

    #[test]
    fn writer_round_trip() {
        let dir = std::env::temp_dir().join(format!("events-rs-test-{}", std::process::id()));
        let mut w = EventWriter::create(&dir).unwrap();
        let name = w.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        w.scalar("loss", 3, 0.25, 10.0).unwrap();
        w.text("note", 1, "héllo", 11.0).unwrap();
        w.hparams(&[("lr".into(), HParamValue::Number(0.01))], &["loss".into()], 12.0).unwrap();
        w.hparams_end(SessionStatus::Failure, 13.0).unwrap();
        w.flush().unwrap();
        let bytes = fs::read(w.path()).unwrap();
        let events: Vec<Event> = read_records(&bytes).iter().map(|r| Event::decode(r.as_slice()).unwrap()).collect();
        fs::remove_dir_all(&dir).unwrap();

        assert_eq!(events.len(), 6);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        let value = |i: usize| match &events[i].what {
            Some(What::Summary(s)) => s.value[0].clone(),
            other => panic!("event {i} is not a summary: {other:?}"),
        };
        assert_eq!((events[1].step, events[1].wall_time), (3, 10.0));
        assert_eq!(value(1).value, Some(Kind::SimpleValue(0.25)));
        match value(2).value {
            Some(Kind::Tensor(t)) => assert_eq!(t.string_val, vec!["héllo".as_bytes().to_vec()]),
            other => panic!("text is not a tensor: {other:?}"),
        }
        let tags: Vec<String> = (3..6).map(|i| value(i).tag).collect();
        assert_eq!(tags, [HPARAMS_EXPERIMENT_TAG, HPARAMS_SESSION_START_TAG, HPARAMS_SESSION_END_TAG]);
        let content = value(5).metadata.unwrap().plugin_data.unwrap().content;
        let end = HParamsPluginData::decode(content.as_slice()).unwrap();
        assert_eq!(
            end.data,
            Some(HParamsData::SessionEndInfo(SessionEndInfo { status: Status::Failure as i32, end_time_secs: 13.0 }))
        );
    }

    #[test]
    fn duplicate_hparam_is_rejected() {
        let dir = std::env::temp_dir().join(format!("events-rs-dup-{}", std::process::id()));
        let mut w = EventWriter::create(&dir).unwrap();
        let hparams = [("a".into(), HParamValue::Bool(true)), ("a".into(), HParamValue::Bool(false))];
        let err = w.hparams(&hparams, &[], 0.0).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
