//! The twelve UK ITL1 regions (ONS International Territorial Levels, 2021 revision).
//!
//! A region is read from its ITL 2021 code (`TLC` to `TLN`) or its snake_case name
//! (`north_east`); it is written as the name, the one form responses and storage use.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    NorthEast,
    NorthWest,
    YorkshireAndTheHumber,
    EastMidlands,
    WestMidlands,
    EastOfEngland,
    London,
    SouthEast,
    SouthWest,
    Wales,
    Scotland,
    NorthernIreland,
}

impl Region {
    pub const ALL: [Region; 12] = [
        Region::NorthEast,
        Region::NorthWest,
        Region::YorkshireAndTheHumber,
        Region::EastMidlands,
        Region::WestMidlands,
        Region::EastOfEngland,
        Region::London,
        Region::SouthEast,
        Region::SouthWest,
        Region::Wales,
        Region::Scotland,
        Region::NorthernIreland,
    ];

    /// The identifier used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::NorthEast => "north_east",
            Region::NorthWest => "north_west",
            Region::YorkshireAndTheHumber => "yorkshire_and_the_humber",
            Region::EastMidlands => "east_midlands",
            Region::WestMidlands => "west_midlands",
            Region::EastOfEngland => "east_of_england",
            Region::London => "london",
            Region::SouthEast => "south_east",
            Region::SouthWest => "south_west",
            Region::Wales => "wales",
            Region::Scotland => "scotland",
            Region::NorthernIreland => "northern_ireland",
        }
    }

    /// The region's name as people write it, for reasons and pages.
    pub fn name(self) -> &'static str {
        match self {
            Region::NorthEast => "North East",
            Region::NorthWest => "North West",
            Region::YorkshireAndTheHumber => "Yorkshire and The Humber",
            Region::EastMidlands => "East Midlands",
            Region::WestMidlands => "West Midlands",
            Region::EastOfEngland => "East of England",
            Region::London => "London",
            Region::SouthEast => "South East",
            Region::SouthWest => "South West",
            Region::Wales => "Wales",
            Region::Scotland => "Scotland",
            Region::NorthernIreland => "Northern Ireland",
        }
    }

    /// The ITL 2021 level 1 code (ONS).
    pub fn itl1_code(self) -> &'static str {
        match self {
            Region::NorthEast => "TLC",
            Region::NorthWest => "TLD",
            Region::YorkshireAndTheHumber => "TLE",
            Region::EastMidlands => "TLF",
            Region::WestMidlands => "TLG",
            Region::EastOfEngland => "TLH",
            Region::London => "TLI",
            Region::SouthEast => "TLJ",
            Region::SouthWest => "TLK",
            Region::Wales => "TLL",
            Region::Scotland => "TLM",
            Region::NorthernIreland => "TLN",
        }
    }
}

/// Why a region was refused: what the API says about the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a UK ITL1 region: its ITL 2021 code (TLC to TLN) or its name (north_east, north_west, yorkshire_and_the_humber, east_midlands, west_midlands, east_of_england, london, south_east, south_west, wales, scotland, northern_ireland)")]
pub struct RegionError;

impl Region {
    /// Reads a region from its ITL 2021 code or its snake_case name, exactly as written.
    pub fn parse(s: &str) -> Result<Region, RegionError> {
        Region::ALL
            .into_iter()
            .find(|r| r.as_str() == s || r.itl1_code() == s)
            .ok_or(RegionError)
    }
}

impl FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Region, String> {
        Region::parse(s).map_err(|_| format!("unknown region {s:?}"))
    }
}

impl fmt::Display for Region {
    /// The human name ("Yorkshire and The Humber").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Responses give a region by its name.
impl utoipa::PartialSchema for Region {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "UK ITL1 region, as responses give it (its name in snake_case). Requests take \
             `RegionInput`, which also accepts the ITL 2021 code.",
        )
        .enum_values(Some(Region::ALL.iter().map(|r| r.as_str())))
        .into()
    }
}

impl utoipa::ToSchema for Region {}

/// What a request may give for a [`Region`] (its name or its ITL 2021 code): a type for the
/// OpenAPI document only, named in a request's `#[schema(value_type = RegionInput)]`.
pub struct RegionInput;

impl utoipa::PartialSchema for RegionInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let listed: Vec<String> = Region::ALL
            .iter()
            .map(|r| format!("{} `{}` ({})", r.itl1_code(), r.as_str(), r.name()))
            .collect();
        let spellings = Region::ALL
            .iter()
            .map(|r| r.as_str())
            .chain(Region::ALL.iter().map(|r| r.itl1_code()));
        crate::schema::string(format!(
            "One of the {} UK ITL1 regions, as its ITL 2021 code or its name: {}. Codes are \
             upper case. Responses give the name.",
            Region::ALL.len(),
            listed.join(", ")
        ))
        .enum_values(Some(spellings))
        .into()
    }
}

impl utoipa::ToSchema for RegionInput {}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Region::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_round_trips_through_its_identifier_and_code() {
        for r in Region::ALL {
            assert_eq!(r.as_str().parse::<Region>().unwrap(), r);
            assert_eq!(r.itl1_code().parse::<Region>().unwrap(), r);
        }
        assert!("atlantis".parse::<Region>().is_err());
        assert!("tlm".parse::<Region>().is_err());
    }

    #[test]
    fn codes_and_names_deserialize_and_serialize_as_the_name() {
        let codes = [
            ("TLC", Region::NorthEast, "North East"),
            ("TLD", Region::NorthWest, "North West"),
            (
                "TLE",
                Region::YorkshireAndTheHumber,
                "Yorkshire and The Humber",
            ),
            ("TLF", Region::EastMidlands, "East Midlands"),
            ("TLG", Region::WestMidlands, "West Midlands"),
            ("TLH", Region::EastOfEngland, "East of England"),
            ("TLI", Region::London, "London"),
            ("TLJ", Region::SouthEast, "South East"),
            ("TLK", Region::SouthWest, "South West"),
            ("TLL", Region::Wales, "Wales"),
            ("TLM", Region::Scotland, "Scotland"),
            ("TLN", Region::NorthernIreland, "Northern Ireland"),
        ];
        for (code, region, name) in codes {
            let read: Region = serde_json::from_str(&format!("{code:?}")).unwrap();
            assert_eq!(read, region);
            assert_eq!(region.name(), name);
            assert_eq!(region.to_string(), name);
            assert_eq!(
                serde_json::to_string(&read).unwrap(),
                format!("{:?}", region.as_str())
            );
            let by_name: Region = serde_json::from_str(&format!("{:?}", region.as_str())).unwrap();
            assert_eq!(by_name, region);
        }
        let err = serde_json::from_str::<Region>("\"TLZ\"").unwrap_err();
        assert!(
            err.to_string().starts_with("must be a UK ITL1 region"),
            "{err}"
        );
    }
}
