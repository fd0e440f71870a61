# jq 1.6 equivalent of mappings/haravan/legion-purchase.toml, its skips included (without
# uuid5, phone parsing and time-zone conversion, which jq lacks; approximated with string
# operations so jq does comparable work). Used by bench/jq-compare.sh.
def first_of(xs): [xs[] | select(. != null and . != "")] | first // null;
def attr(n): ((.note_attributes // []) | map(select(.name == n)) | first | .value) // null;
def url_param(n): if . == null then null else (split("?") | .[1] // "" | split("&") | map(split("=")) | map(select(.[0] == n)) | first | .[1]) // null end;
def phone_nz: if . == null then null else gsub("[^0-9]"; "") | sub("^84"; "") | sub("^0"; "") | select(length >= 9) end;
# in_currency to VND: the amount as a number, rounded half away from zero to the dong.
def vnd: if . == null then null else tonumber | if . < 0 then -(-. + 0.5 | floor) else . + 0.5 | floor end end;
select(.financial_status == "paid")
| [.customer.phone, .billing_address.phone, .shipping_address.phone] as $phones
| first_of($phones) as $given
| first_of([$phones[] | phone_nz]) as $username
| if .currency != "VND" then {skipped: "the order is in \(.currency), and Legion counts in VND"}
  elif $username == null then {skipped: "no mobile number Legion can use: \($given // "none given")"}
  else {
    id: ("storehook/legion/haravan/\(.id)" | @base64),
    event_id: 2,
    meta: {source: "haravan", topic: "orders/paid"},
    payload: {
      uid: ((.customer.id // "") | tostring),
      username: $username,
      order_id: (.order_number | tostring | ltrimstr("#")),
      order_total_price: (.total_price + .total_discounts | vnd),
      order_paid_price: (.total_price | vnd),
      order_with_discount_price: (.total_price | vnd),
      order_coupon_codes: ([.discount_codes[]? | select(.is_coupon_code != false) | .code | select(. != null and . != "")] | if length == 0 then ["empty"] else . end),
      discount_price_applied: (.total_discounts | vnd),
      cashback_price_applied: 0,
      cost_misc: 0,
      cost_shipping: ([.shipping_lines[]?.price] | add // 0 | vnd),
      cost_taxonomy: (.total_tax | vnd),
      currency: "VND",
      products: [.line_items[]?.product_id | select(. != null and . != 0)],
      Included_categories: [],
      affiliate_referrer_id: (first_of([attr("ref"), (.landing_site | url_param("ref")), ""])),
      timestamp: (.created_at | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601 + 25200 | strftime("%Y-%m-%d %H:%M:%S")),
      purchase_channel: "online",
      branch: ""
    }
  } end
