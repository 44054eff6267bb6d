fn main() {
    gymnos_plugin_build::link_libtorch();
}
