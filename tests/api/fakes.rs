//! The test kit's fake external services, under the names the tests use. They check
//! what they receive.

pub use palyra::testkit::model::FakeModel;
pub use palyra::testkit::oauth::{FakeClientAuth, FakeOAuth, ForcedAnswer};
pub use palyra::testkit::provider::FakeProvider;
