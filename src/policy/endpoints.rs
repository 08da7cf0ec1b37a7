//! A saved copy of Microsoft's published Microsoft 365 endpoints list (a JSON array of
//! records with `id`, `serviceArea`, `urls`, `ips`, `tcpPorts`, `udpPorts`,
//! `expressRoute`, `category`, `required`): the `ips` of the records of service area
//! `Exchange` are Exchange Online addresses. Read once with the topology; nothing is
//! fetched at run time (`docs/topology.md` says how a site refreshes its copy).

use std::path::Path;

use serde::Deserialize;

use super::prefix::Prefix;
use crate::config::ConfigError;

/// One record of service area `Exchange` that lists addresses.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: u32,
    pub ips: Vec<Prefix>,
    /// As Microsoft writes them (`"25,587"`); empty when the record has none.
    pub tcp_ports: String,
    pub udp_ports: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    id: u32,
    service_area: String,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    tcp_ports: Option<String>,
    #[serde(default)]
    udp_ports: Option<String>,
    /// Read only to hold the file to Microsoft's format.
    #[serde(default, rename = "urls")]
    _urls: Vec<String>,
    #[serde(rename = "expressRoute")]
    _express_route: bool,
    category: String,
    #[serde(rename = "required")]
    _required: bool,
}

/// Reads the endpoints file at `file`; errors name the file, the record and the field.
pub fn load(file: &Path) -> Result<Vec<Record>, ConfigError> {
    let text =
        std::fs::read_to_string(file).map_err(|err| error(file, None, "", format!("cannot read: {err}")))?;
    parse(file, &text)
}

pub fn parse(file: &Path, text: &str) -> Result<Vec<Record>, ConfigError> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|err| {
        error(
            file,
            Some(err.line()),
            "",
            format!("not Microsoft's Microsoft 365 endpoints format (a JSON array of records): {err}"),
        )
    })?;
    let mut records = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let id = value.get("id").and_then(serde_json::Value::as_u64);
        let key = match id {
            Some(id) => format!("record {i} (id {id})"),
            None => format!("record {i}"),
        };
        let raw: RawRecord = serde_json::from_value(value)
            .map_err(|err| error(file, None, &key, format!("not a Microsoft 365 endpoints record: {err}")))?;
        if raw.category.is_empty() {
            return Err(error(file, None, &format!("{key}.category"), "must not be empty"));
        }
        for (name, ports) in [("tcpPorts", &raw.tcp_ports), ("udpPorts", &raw.udp_ports)] {
            if let Some(bad) = ports.as_deref().and_then(bad_port_list) {
                return Err(error(
                    file,
                    None,
                    &format!("{key}.{name}"),
                    format!("`{bad}` is not a port or a range like \"3478-3481\""),
                ));
            }
        }
        if raw.service_area != "Exchange" {
            continue;
        }
        let ips = raw
            .ips
            .iter()
            .map(|ip| {
                ip.parse::<Prefix>()
                    .map(Prefix::canonical)
                    .map_err(|msg| error(file, None, &format!("{key}.ips"), msg))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ips.is_empty() {
            continue;
        }
        records.push(Record {
            id: raw.id,
            ips,
            tcp_ports: raw.tcp_ports.unwrap_or_default(),
            udp_ports: raw.udp_ports.unwrap_or_default(),
        });
    }
    Ok(records)
}

impl Record {
    /// Whether the record's ports name this one (`proto` TCP or UDP).
    pub fn names_port(&self, proto: u8, port: u16) -> bool {
        let list = if proto == crate::decode::proto::UDP { &self.udp_ports } else { &self.tcp_ports };
        list.split(',').map(str::trim).filter(|item| !item.is_empty()).any(|item| {
            let (lo, hi) = item.split_once('-').unwrap_or((item, item));
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&port))
        })
    }
}

/// The first item of a `"80,443,3478-3481"` list that is not a port or a range.
fn bad_port_list(list: &str) -> Option<&str> {
    list.split(',').map(str::trim).find(|item| {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        !matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if lo <= hi)
    })
}

fn error(file: &Path, line: Option<usize>, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { file: file.to_path_buf(), line, key: key.to_string(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[
  {"id": 1, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online",
   "urls": ["outlook.office.com"], "ips": ["13.107.6.152/31", "2603:1006::/40"],
   "tcpPorts": "80,443", "udpPorts": "443", "expressRoute": true, "category": "Optimize", "required": true},
  {"id": 8, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online",
   "urls": ["*.mail.protection.outlook.com"], "ips": ["40.92.0.0/15"],
   "tcpPorts": "25", "expressRoute": false, "category": "Allow", "required": true},
  {"id": 11, "serviceArea": "SharePoint", "serviceAreaDisplayName": "SharePoint Online and OneDrive for Business",
   "urls": ["*.sharepoint.com"], "ips": ["13.107.136.0/22"],
   "tcpPorts": "80,443", "expressRoute": true, "category": "Optimize", "required": true},
  {"id": 12, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online",
   "urls": ["r1.res.office365.com"], "tcpPorts": "443", "expressRoute": false, "category": "Default", "required": false}
]"#;

    #[test]
    fn keeps_the_exchange_records_with_addresses() {
        let records = parse(Path::new("endpoints.json"), SAMPLE).unwrap();
        let ids: Vec<u32> = records.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 8]);
        assert_eq!(records[0].ips.len(), 2);
        assert_eq!(records[1].tcp_ports, "25");
        assert_eq!(records[1].udp_ports, "");
        assert!(records[0].names_port(6, 443) && records[0].names_port(17, 443));
        assert!(!records[0].names_port(6, 25) && !records[1].names_port(17, 25));
    }

    #[test]
    fn a_file_not_in_microsofts_format_names_the_record() {
        let err = parse(Path::new("e.json"), &SAMPLE.replace("\"category\": \"Allow\", ", "")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "e.json: record 1 (id 8): not a Microsoft 365 endpoints record: missing field `category`"
            ),
            "{err}"
        );
        let err = parse(Path::new("e.json"), &SAMPLE.replace("40.92.0.0/15", "40.92.0.0/33")).unwrap_err();
        assert_eq!(err.key, "record 1 (id 8).ips", "{err}");
        let err =
            parse(Path::new("e.json"), &SAMPLE.replace("\"tcpPorts\": \"25\"", "\"tcpPorts\": \"25,smtp\""))
                .unwrap_err();
        assert_eq!(err.key, "record 1 (id 8).tcpPorts", "{err}");
        let err = parse(Path::new("e.json"), "{\"id\": 1}").unwrap_err();
        assert!(err.to_string().starts_with("e.json:1: not Microsoft's"), "{err}");
    }
}
