const axios = require('axios');
// 定义请求头部
const headers = {
'authorization': 'esp_ai平台的32位open_api_key',
'Content-Type': 'application/json'
};
// 定义要发送的数据
const data = {
"id": "2cf661bb42b642018ee13af7150b8310",
"name": "小琅",
"version": "1.22.34",
"enable": "1",
"wifi_ssid": "联域科技",
"wifi_pwd": "lykj987654321",
"net_ip": "192.168.3.71",
"bin_id": "0",
"nation": "China",
"province": "Guangdong",
"city": "Guangzhou",
"longitude": "113.2539",
"latitude": "23.1181",
"localData": {"wifi_ssid": "联域科技", "wifi_pwd": "lykj987654321"}
};
// 发送POST请求
axios.post('https://api.espai.fun/devices/update', data, {headers})
.then(response => {
console.log(response.data);
})
.catch(error => {
console.error(error);
});
