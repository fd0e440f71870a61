//! One integration test binary: a real server on 127.0.0.1:0 over a real SQLite file (and,
//! where `DATABASE_URL` names one, over PostgreSQL).

mod admin_api;
mod browser;
mod cli;
mod copy_store;
mod crash;
mod dashboard;
mod delivery;
mod deploy;
mod destinations;
mod doubles;
mod durability;
mod handshakes;
mod harness;
mod instances;
mod logs;
mod mapping_tests;
mod metrics;
mod migrations;
mod open_internet;
mod outbox;
mod postgres;
mod receive;
mod refusals;
mod rooms;
mod store_contract;
mod translate;
mod views;
mod walkthrough;
mod workers;
