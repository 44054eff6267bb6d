fn main() {
    // The libtorch version plugins must have been built against; the host itself never links it.
    gymnos_plugin_build::export_libtorch_version();
}
