//! The Kafka test broker starts, accepts connections and is gone after stop.

use std::net::TcpStream;
use std::time::Duration;

#[test]
fn starts_accepts_and_stops() -> anyhow::Result<()> {
    let broker = bqsink_testkit::Broker::start()?;
    let addr = broker.bootstrap();
    TcpStream::connect(&addr)?;
    broker.stop();
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(&addr).is_err(), "the broker still listens on {addr} after stop");
    Ok(())
}
