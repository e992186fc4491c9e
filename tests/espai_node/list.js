const axios = require('axios');
// 定义请求头部
const headers = {
'authorization': 'esp_ai平台的32位open_api_key',
'Content-Type': 'application/json'
};
// 定义要发送的数据
const data = {
"name": "小琅",
"api_key": "你自己设备对应的api_key",
"device_id": "FC:01:2C:DB:14:30",
"bin_id": "0",
"version": "1.22.34",
"enable": "1",
"is_online": "1",
"type": "0",
"page": "1",
"limit": "10"
};
// 发送POST请求
axios.post('https://api.espai.fun/devices/list', data, {headers})
.then(response => {
console.log(response.data);
})
.catch(error => {
console.error(error);
});
