//! Compiles `schema/bramble.proto` with protox (a pure-Rust protobuf compiler, so no `protoc`
//! is needed on the build machine) and generates the prost types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schema/bramble.proto");
    let fds = protox::compile(["bramble.proto"], ["schema"])?;
    prost_build::Config::new()
        .bytes(["."])
        // MailItem is large; boxed so every Envelope does not carry its size.
        .boxed(".bramble.v1.Envelope.body.mail_item")
        .compile_fds(fds)?;
    Ok(())
}
