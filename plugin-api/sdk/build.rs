fn main() {
    // The SDK's own unit tests are a binary that uses libtorch.
    gymnos_plugin_build::link_libtorch();
}
