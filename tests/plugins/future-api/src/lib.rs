//! A pack for a seam:sync version from the future: the host must refuse it whole.

wit_bindgen::generate!({
    inline: "
        package seam:sync@9.0.0;
        interface mapper {
            map-change: func(change: string) -> result<list<string>, string>;
        }
        world mapping {
            export mapper;
        }
    ",
});

struct Future;

impl exports::seam::sync::mapper::Guest for Future {
    fn map_change(change: String) -> Result<Vec<String>, String> {
        Ok(vec![change])
    }
}

export!(Future);
