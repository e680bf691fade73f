//! The ledger's table on the emulator: made with the key schema and the
//! index of `LedgerTable` in `infra/central.yaml` (which the stack test
//! deploys as it is), and read back item by item.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

/// Creates the ledger table `name` (as the central stack does) and returns
/// its name.
pub async fn create_ledger_table(config: &SdkConfig, name: &str) -> String {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    let attr = |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap();
    let hash = |n: &str| KeySchemaElement::builder().attribute_name(n).key_type(KeyType::Hash).build().unwrap();
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("finding_id"))
        .attribute_definitions(attr("open_account"))
        .key_schema(hash("finding_id"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("open")
                .key_schema(hash("open_account"))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    name.to_string()
}

/// The ledger's item for `finding_id`, if any.
pub async fn ledger_item(config: &SdkConfig, table: &str, finding_id: &str) -> Option<HashMap<String, AttributeValue>> {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    let out = ddb
        .get_item()
        .table_name(table)
        .key("finding_id", AttributeValue::S(finding_id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item
}

/// A string attribute of an item.
pub fn attr_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}
