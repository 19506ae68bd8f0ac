// A service method that is not `async fn`.

#[rpcnet::service]
trait Clock {
    fn now(&self) -> Result<u64, String>;
}

fn main() {}
