//! What a payer sends, built the way a payer would.

/// An 835 paying `pcn` to payee NPI `payee`.
pub fn remittance(payee: &str, pcn: &str, charge: u32, paid: u32) -> Vec<u8> {
    remittance_of(payee, &[(pcn.to_string(), charge.to_string(), paid.to_string())])
}

/// An 835 to payee NPI `payee` answering each claim (patient control
/// number, charge, paid), each under its own payer claim number.
pub fn remittance_of(payee: &str, claims: &[(String, String, String)]) -> Vec<u8> {
    remittance_sets(payee, &[claims])
}

/// An 835 interchange with one transaction set per element of `sets`
/// (each its own payment), all to `payee`.
pub fn remittance_sets(payee: &str, sets: &[&[(String, String, String)]]) -> Vec<u8> {
    let mut all = vec![
        "ISA*00*          *00*          *ZZ*ACMEPAYER      *ZZ*CLEARWAY       *261205*0900*^*00501*000000777*0*T*:"
            .to_string(),
        "GS*HP*ACMEPAYER*CLEARWAY*20261205*0900*777*X*005010X221A1".into(),
    ];
    for (s, claims) in sets.iter().enumerate() {
        let total: rust_decimal::Decimal = claims.iter().map(|c| c.2.parse::<rust_decimal::Decimal>().unwrap()).sum();
        let st = format!("{:04}", s + 1);
        let mut body = vec![
            format!("ST*835*{st}"),
            format!("BPR*I*{total}*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20261205"),
            format!("TRN*1*{}*1512345678", 12_345_678_901u64 + s as u64),
            "DTM*405*20261205".into(),
            "N1*PR*ACME HEALTH".into(),
            "N3*1 PAYER WAY".into(),
            "N4*SPRINGFIELD*IL*62701".into(),
            "PER*BL*PAYER DESK*TE*5555550199".into(),
            format!("N1*PE*CLINIC*XX*{payee}"),
            "REF*TJ*123456789".into(),
            "LX*1".into(),
        ];
        for (n, (pcn, charge, paid)) in claims.iter().enumerate() {
            body.push(format!("CLP*{pcn}*1*{charge}*{paid}**12*PAYERICN{:03}*11*1", n + 1));
            body.push(format!("NM1*QC*1*TESTLAST*PAT{n}****MI*M{n}"));
            body.push("DTM*232*20261130".into());
        }
        all.extend(body.iter().cloned());
        all.push(format!("SE*{}*{st}", body.len() + 1));
    }
    all.push(format!("GE*{}*777", sets.len()));
    all.push("IEA*1*000000777".into());
    all.iter().map(|s| format!("{s}~\n")).collect::<String>().into_bytes()
}
