//! SOAP: the partner API `login` call and Outbound Message envelopes.

use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;

/// Username and password from a partner `login` request (password + security token concatenated).
pub fn parse_login(body: &str) -> Result<(String, String), String> {
    let mut reader = Reader::from_str(body);
    let (mut username, mut password) = (None, None);
    // Text inside the element being read; entity references arrive as their own events.
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = Some((String::from_utf8_lossy(e.local_name().as_ref()).to_string(), String::new()))
            }
            Ok(Event::Text(t)) => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(&crate::xml::text(&t)?);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(&crate::xml::reference(&r)?);
                }
            }
            // Salesforce's samples wrap the credentials in CDATA.
            Ok(Event::CData(c)) => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(std::str::from_utf8(&c).map_err(|_| "the SOAP login request is not UTF-8")?);
                }
            }
            Ok(Event::End(_)) => match current.take() {
                Some((name, text)) if name == "username" => username = Some(text),
                Some((name, text)) if name == "password" => password = Some(text),
                _ => {}
            },
            Ok(Event::Eof) => break,
            Err(e) => return Err(format!("malformed SOAP request: {e}")),
            _ => {}
        }
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err("the SOAP login request has no username or password".into()),
    }
}

/// A partner `loginResponse`, its elements in the WSDL's order: Salesforce's own Pub/Sub
/// sample client reads `serverUrl`, `sessionId` and `userInfo/organizationId` by position.
pub fn login_response(session_id: &str, server_url: &str, user_id: &str, org_id: &str, username: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <loginResponse>
   <result>
    <metadataServerUrl>{server_url}</metadataServerUrl>
    <passwordExpired>false</passwordExpired>
    <sandbox>true</sandbox>
    <serverUrl>{server_url}</serverUrl>
    <sessionId>{session_id}</sessionId>
    <userId>{user_id}</userId>
    <userInfo>
     <accessibilityMode>false</accessibilityMode>
     <chatterExternal>false</chatterExternal>
     <currencySymbol>$</currencySymbol>
     <orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>
     <orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>
     <orgDefaultCurrencyLocale>en_US</orgDefaultCurrencyLocale>
     <orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>
     <orgHasPersonAccounts>false</orgHasPersonAccounts>
     <organizationId>{org_id}</organizationId>
     <organizationMultiCurrency>false</organizationMultiCurrency>
     <organizationName>seam simulator</organizationName>
     <profileId>00e5g000000SEAMAAA</profileId>
     <roleId xsi:nil="true"/>
     <sessionSecondsValid>7200</sessionSecondsValid>
     <userDefaultCurrencyIsoCode xsi:nil="true"/>
     <userEmail>{username}</userEmail>
     <userFullName>Seam Integration</userFullName>
     <userId>{user_id}</userId>
     <userLanguage>en_US</userLanguage>
     <userLocale>en_US</userLocale>
     <userName>{username}</userName>
     <userTimeZone>America/Los_Angeles</userTimeZone>
     <userType>Standard</userType>
     <userUiSkin>Theme3</userUiSkin>
    </userInfo>
   </result>
  </loginResponse>
 </soapenv:Body>
</soapenv:Envelope>"#,
        server_url = escape(server_url),
        session_id = escape(session_id),
        username = escape(username),
    )
}

pub fn login_fault() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <soapenv:Fault>
   <faultcode>sf:INVALID_LOGIN</faultcode>
   <faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>
   <detail>
    <sf:LoginFault xsi:type="sf:LoginFault">
     <sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>
     <sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage>
    </sf:LoginFault>
   </detail>
  </soapenv:Fault>
 </soapenv:Body>
</soapenv:Envelope>"#
        .to_string()
}

/// One `<Notification>` element for an Outbound Message: the record's fields, typed as the enterprise WSDL does.
pub fn notification(notification_id: &str, object: &str, record: &serde_json::Map<String, Value>) -> String {
    let mut fields = String::new();
    for (name, value) in record {
        if name == "attributes" {
            continue;
        }
        match value {
            Value::Null => fields.push_str(&format!("<sf:{name} xsi:nil=\"true\"/>")),
            Value::String(s) => fields.push_str(&format!("<sf:{name}>{}</sf:{name}>", escape(s.as_str()))),
            other => fields.push_str(&format!("<sf:{name}>{other}</sf:{name}>")),
        }
    }
    format!(
        "<Notification><Id>{notification_id}</Id><sObject xsi:type=\"sf:{object}\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">{fields}</sObject></Notification>"
    )
}

/// The envelope carrying up to 100 notifications.
pub fn outbound_message(organization_id: &str, partner_url: &str, notifications: &[&str]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{organization_id}</OrganizationId>
   <ActionId>04k5g0000000SEAMAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>{url}</EnterpriseUrl>
   <PartnerUrl>{url}</PartnerUrl>
   {body}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#,
        url = escape(partner_url),
        body = notifications.concat(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_login_simple_salesforce_sends() {
        let body = r#"<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
    <env:Body>
        <n1:login xmlns:n1="urn:partner.soap.sforce.com">
            <n1:username>integration@seam.example</n1:username>
            <n1:password>p&amp;sswordTOKEN</n1:password>
        </n1:login>
    </env:Body>
</env:Envelope>"#;
        assert_eq!(parse_login(body).unwrap(), ("integration@seam.example".into(), "p&sswordTOKEN".into()));
        assert!(parse_login("<x/>").is_err());
    }
}
