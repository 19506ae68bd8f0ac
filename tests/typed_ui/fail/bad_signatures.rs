// Signatures the attribute cannot serve, each with its own message.

use rpcnet::typed::Streaming;

#[rpcnet::service(name = "demo.Things", colour = "blue")]
trait Things {
    // Not a `Result`.
    async fn count(&self) -> u64;

    // A response stream inside a `Result`.
    async fn list(&self) -> Result<Streaming<Result<u32, String>>, String>;

    // `&mut self`, and a borrowed argument.
    async fn rename(&mut self, name: &str) -> Result<(), String>;

    // A request stream inside a `Result`'s `Ok`: not a stream argument.
    async fn upload(&self, chunks: Streaming<u8>, name: String) -> Result<(), String>;

    // An unknown method option.
    #[rpcnet(retries = 3)]
    async fn ping(&self) -> Result<(), String>;

    // Two methods with one wire name.
    async fn ok(&self) -> Result<(), String>;
    #[rpcnet(name = "ok")]
    async fn fine(&self) -> Result<(), String>;
}

fn main() {}
