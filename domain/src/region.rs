//! The twelve UK ITL1 regions (ONS International Territorial Levels, 2021 revision).

use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

impl FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Region, String> {
        Region::ALL
            .into_iter()
            .find(|r| r.as_str() == s || r.itl1_code() == s)
            .ok_or_else(|| format!("unknown region {s:?}"))
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
    }
}
