fn main() {
    // Links libtorch as the host does (-Wl,--no-as-needed -ltorch, rpath): one libtorch per process.
    gymnos_plugin_build::link_libtorch();
}
