//! Link flags for the plugin library.

fn main() {
    // Threads the editor's libraries start (the X11 clipboard's reader, Mesa's workers) outlive
    // the editor and run until the process ends. A host that unloads the plugin library after
    // closing it would leave them running in unmapped code, so the library asks never to be
    // unloaded: `dlclose` then keeps it mapped and those threads stay valid.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
}
