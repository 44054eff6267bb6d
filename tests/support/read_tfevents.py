"""Reads TensorBoard event files the way TensorBoard does and prints what it found as JSON.

Usage: python read_tfevents.py LOGDIR

Every run under LOGDIR (each folder holding an events file, as TensorBoard discovers them) is
loaded with TensorBoard's own `plugin_event_accumulator`, the loader behind `tensorboard
--logdir`, which also converts legacy `simple_value` scalars to tensors. Prints one JSON object:

    {"scalars": {tag: [[step, value], ...]},
     "text": {tag: [[step, text], ...]},
     "hparams": {"hparams": {name: value}, "metrics": [metric tag, ...], "status": "STATUS_..."}}

Scalars are the float32 values as stored (printed as Python floats). Series from several runs
are concatenated in run-path order. "status" is null when no session end was logged.

TensorBoard's loader stops silently at a record whose CRC does not match, so every file is
first read strictly with TensorBoard's record reader, which raises on any damaged record.
"""

import json
import os
import sys

from tensorboard.backend.event_processing import io_wrapper
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.util import tensor_util


def check_records(path):
    """Reads every record of `path`, raising DataLossError on a bad length or CRC."""
    reader = pywrap_tensorflow.PyRecordReader_New(path)
    count = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return count
        count += 1


def tag_to_content(acc, plugin_name):
    """The accumulator's {tag: content} for a plugin; empty when the run logged nothing for it
    (the accumulator raises KeyError for a plugin it never saw)."""
    if plugin_name not in acc.ActivePlugins():
        return {}
    return acc.PluginTagToContent(plugin_name)


def proto_value(value):
    """A google.protobuf.Value as the plain Python value it holds."""
    kind = value.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(value, kind)


def main(logdir):
    out = {"scalars": {}, "text": {}, "hparams": {"hparams": {}, "metrics": [], "status": None}}
    runs = sorted(io_wrapper.GetLogdirSubdirectories(logdir))
    if not runs:
        sys.exit(f"no event files under {logdir}")
    for run in runs:
        for name in sorted(os.listdir(run)):
            path = os.path.join(run, name)
            if io_wrapper.IsSummaryEventsFile(path):
                check_records(path)
        # Size 0 keeps every event; TensorBoard's default samples long series.
        acc = pea.EventAccumulator(run, size_guidance={pea.TENSORS: 0})
        acc.Reload()

        for tag in tag_to_content(acc, scalar_metadata.PLUGIN_NAME):
            series = out["scalars"].setdefault(tag, [])
            for e in acc.Tensors(tag):
                series.append([e.step, tensor_util.make_ndarray(e.tensor_proto).item()])

        for tag in tag_to_content(acc, text_metadata.PLUGIN_NAME):
            series = out["text"].setdefault(tag, [])
            for e in acc.Tensors(tag):
                texts = tensor_util.make_ndarray(e.tensor_proto).flatten()
                # One string per event here; join in case a writer logged a text table.
                series.append([e.step, "\n".join(t.decode("utf-8") for t in texts)])

        hp = out["hparams"]
        for tag, content in tag_to_content(acc, hparams_metadata.PLUGIN_NAME).items():
            if tag == hparams_metadata.EXPERIMENT_TAG:
                experiment = hparams_metadata.parse_experiment_plugin_data(content)
                hp["metrics"].extend(m.name.tag for m in experiment.metric_infos)
            elif tag == hparams_metadata.SESSION_START_INFO_TAG:
                start = hparams_metadata.parse_session_start_info_plugin_data(content)
                hp["hparams"].update({k: proto_value(v) for k, v in start.hparams.items()})
            elif tag == hparams_metadata.SESSION_END_INFO_TAG:
                end = hparams_metadata.parse_session_end_info_plugin_data(content)
                hp["status"] = api_pb2.Status.Name(end.status)
    # ASCII-only output (non-ASCII escaped), whatever the locale's encoding of stdout.
    json.dump(out, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
